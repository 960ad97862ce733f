"""Convert datasets into a task: Alpaca JSON, ShareGPT, OpenAI chat JSONL, CSV, saved HF datasets.

Each reader turns the source into task records (`{"instruction","input","output"}`,
`{"input","output"}` or `{"messages": [...]}`, with `id` and `context_ids` when given), and each
record is validated by the task loader's own `parse_row`, so an error names the source file,
the record number and what to fix. The readers are per source: experiments/data/json_formats.py
(Alpaca, ShareGPT, OpenAI), columns.py (CSV, and the column mapping) and hf_datasets.py (saved
datasets); this module picks one, splits train from eval and writes the task folder. Each
format also has a writer back to itself (experiments/data/export.py).
"""

from __future__ import annotations

import random
from pathlib import Path

from experiments.data.columns import csv_records
from experiments.data.hf_datasets import UNLABELLED, hf_records, hf_splits
from experiments.data.json_formats import (
    alpaca_record,
    json_items,
    openai_record,
    sharegpt_record,
)
from experiments.data.task_folder_writer import jsonl, write_task_dir
from experiments.errors import TaskError
from experiments.owned_files import check_replaceable
from experiments.task import parse_row

FORMATS = ("alpaca", "sharegpt", "openai", "csv", "hf")


def read_records(source: Path, fmt: str, mapping: dict[str, str] | None = None) -> list[dict]:
    """The source as validated task records, in source order."""
    if fmt not in FORMATS:
        raise TaskError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not source.exists():
        raise TaskError(f"{source}: not found")
    if fmt == "hf":
        records = hf_records(source, mapping or {})
    elif fmt == "csv":
        records = csv_records(source, mapping or {})
    else:
        items = json_items(source)
        convert_one = {
            "alpaca": alpaca_record,
            "sharegpt": sharegpt_record,
            "openai": openai_record,
        }[fmt]
        records = [(where, convert_one(item, where)) for where, item in items]
    for where, record in records:
        parse_row(record, where, default_id="")
    return [record for _, record in records]


def convert(
    source: Path,
    fmt: str,
    out: Path,
    kind: str,
    mapping: dict[str, str] | None = None,
    eval_source: Path | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    name: str | None = None,
    instruction: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict[str, int]]:
    """Write a task folder from `source`; returns (task.yaml path, rows per split).

    The eval split is, in order of preference: `eval_source`; a saved dataset's
    test/validation/eval split; else a seeded `eval_fraction` of the rows.
    """
    source, out = Path(source), Path(out)
    check_replaceable(out, "data convert", overwrite, [source, eval_source])
    UNLABELLED.clear()
    splits = None
    if fmt == "hf" and eval_source is None:
        splits = hf_splits(source, mapping or {})
    if splits is None:
        train = read_records(source, fmt, mapping)
        if eval_source is not None:
            splits = {"train": train, "eval": read_records(Path(eval_source), fmt, mapping)}
        else:
            splits = _split(train, eval_fraction, seed, source)
    for split, records in splits.items():
        if not records:
            raise TaskError(f"{source}: no {split} rows; add rows or pass --eval")
    spec = {"name": name or out.name, "kind": kind}
    if instruction:
        spec["instruction"] = instruction
    spec.update({"train": "train.jsonl", "eval": "eval.jsonl"})
    _unique_ids(splits)
    files = {f"{s}.jsonl": jsonl(records) for s, records in splits.items()}
    path = write_task_dir(
        out, spec, files, "data convert", overwrite=overwrite, inputs=[source, eval_source]
    )
    counts = {s: len(r) for s, r in splits.items()}
    if UNLABELLED:
        counts["unlabelled"] = sum(UNLABELLED.values())
    return path, counts


def _unique_ids(splits: dict[str, list[dict]]) -> None:
    """Ids unique across the task (a suffix on repeats; rows without one get their position):
    `run` refuses a file with a repeated id, and a row in both splits would read as leakage."""
    seen: set[str] = set()
    for split, records in splits.items():
        for n, record in enumerate(records, 1):
            raw = record.get("id")
            base = f"{split}-{n}" if raw is None or raw == "" else str(raw)
            record_id, k = base, 1
            while record_id in seen:
                k += 1
                record_id = f"{base}-{k}"
            seen.add(record_id)
            record["id"] = record_id


def _split(records: list[dict], fraction: float, seed: int, source: Path) -> dict:
    if not 0 < fraction < 1:
        raise TaskError(f"--eval-fraction {fraction}: give a share between 0 and 1")
    if len(records) < 2:
        raise TaskError(f"{source}: {len(records)} row(s) cannot be split; pass --eval FILE")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(records) - 1, max(1, round(len(records) * fraction)))
    held = set(order[:n_eval])
    return {
        "train": [r for i, r in enumerate(records) if i not in held],
        "eval": [r for i, r in enumerate(records) if i in held],
    }
