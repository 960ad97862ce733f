"""Datasets saved with Hugging Face's `save_to_disk`: their train and eval splits as task
records, chat columns read as OpenAI or ShareGPT records, ClassLabel integers as their names
(rows without a label skipped and counted in UNLABELLED)."""

from __future__ import annotations

from pathlib import Path

from experiments.data.columns import from_columns, pick_columns
from experiments.data.json_formats import openai_record, sharegpt_record
from experiments.errors import TaskError
from experiments.task import parse_row

# Rows skipped because their ClassLabel is -1 ("no label"), per split, for the summary line.
UNLABELLED: dict[str, int] = {}


def _load_hf(source: Path):
    from datasets import load_from_disk

    try:
        return load_from_disk(str(source))
    except (FileNotFoundError, ValueError) as exc:
        raise TaskError(
            f"{source}: not a dataset saved with save_to_disk ({exc}); pass that folder"
        ) from None


def hf_splits(source: Path, mapping: dict[str, str]) -> dict[str, list[dict]] | None:
    """train and eval records from a saved DatasetDict that has both; else None."""
    dataset = _load_hf(source)
    if not hasattr(dataset, "keys"):
        return None
    eval_name = next((s for s in ("test", "validation", "eval") if s in dataset), None)
    if "train" not in dataset or eval_name is None:
        return None
    return {
        "train": _hf_rows(dataset["train"], mapping, f"{source}/train"),
        "eval": _hf_rows(dataset[eval_name], mapping, f"{source}/{eval_name}"),
    }


def hf_records(source: Path, mapping: dict[str, str]) -> list[tuple[str, dict]]:
    dataset = _load_hf(source)
    if hasattr(dataset, "keys"):
        name = "train" if "train" in dataset else next(iter(dataset))
        dataset, where = dataset[name], f"{source}/{name}"
    else:
        where = str(source)
    return [(f"{where}: row {i}", r) for i, r in enumerate(_hf_rows(dataset, mapping, where), 1)]


def _hf_rows(dataset, mapping: dict[str, str], where: str) -> list[dict]:
    columns = list(dataset.column_names)
    if not mapping and "messages" in columns:
        return [openai_record(item, f"{where}: row {i}") for i, item in enumerate(dataset, 1)]
    if not mapping and "conversations" in columns:
        return [sharegpt_record(item, f"{where}: row {i}") for i, item in enumerate(dataset, 1)]
    chosen = pick_columns(columns, mapping, where)
    names = _class_names(dataset, chosen.get("output"))
    records = []
    for i, item in enumerate(dataset, 1):
        values = dict(item)
        if names is not None:
            label = values[chosen["output"]]
            if not isinstance(label, int) or not 0 <= label < len(names):
                # Hugging Face's ClassLabel writes -1 for "no label" (test splits often).
                UNLABELLED[where] = UNLABELLED.get(where, 0) + 1
                continue
            values[chosen["output"]] = names[label]
        record = from_columns(values, chosen, f"{where}: row {i}")
        parse_row(record, f"{where}: row {i}", default_id="")
        records.append(record)
    return records


def _class_names(dataset, column: str | None) -> list[str] | None:
    """A ClassLabel column's names, so integer labels become their names."""
    feature = dataset.features.get(column) if column else None
    return list(feature.names) if getattr(feature, "names", None) else None
