"""Convert datasets into a task: Alpaca JSON, ShareGPT, OpenAI chat JSONL, CSV, saved HF datasets.

Each reader turns the source into task records (`{"instruction","input","output"}`,
`{"input","output"}` or `{"messages": [...]}`, with `id` and `context_ids` when given), and each
record is validated by the task loader's own `parse_row`, so an error names the source file,
the record number and what to fix. Each format also has a writer back to itself (`export`),
which the round-trip tests use and which lets a cleaned task go back to another tool.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

from experiments.data.output import jsonl, write_task_dir
from experiments.errors import TaskError
from experiments.outputs import check_replaceable
from experiments.task import parse_row

FORMATS = ("alpaca", "sharegpt", "openai", "csv", "hf")
FIELDS = ("id", "instruction", "input", "output", "context_ids")
# Columns tried, in order, for each field when --map does not name one.
ALIASES = {
    "id": ("id",),
    "instruction": ("instruction",),
    "input": ("input", "question", "prompt", "text", "query"),
    "output": ("output", "answer", "response", "completion", "label"),
    "context_ids": ("context_ids",),
}
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}
TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system"}


def parse_mapping(text: str) -> dict[str, str]:
    """`input=question,output=answer` -> {"input": "question", "output": "answer"}."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        field, sep, column = part.partition("=")
        if not sep or field.strip() not in FIELDS or not column.strip():
            raise TaskError(
                f"--map {part!r}: expected FIELD=COLUMN with FIELD one of {', '.join(FIELDS)}"
            )
        mapping[field.strip()] = column.strip()
    return mapping


def read_records(source: Path, fmt: str, mapping: dict[str, str] | None = None) -> list[dict]:
    """The source as validated task records, in source order."""
    if fmt not in FORMATS:
        raise TaskError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not source.exists():
        raise TaskError(f"{source}: not found")
    if fmt == "hf":
        records = _hf_records(source, mapping or {})
    elif fmt == "csv":
        records = _csv_records(source, mapping or {})
    else:
        items = _json_items(source)
        convert_one = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}[fmt]
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
        splits = _hf_splits(source, mapping or {})
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


# Rows skipped because their ClassLabel is -1 ("no label"), per split, for the summary line.
UNLABELLED: dict[str, int] = {}


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


def _json_items(source: Path) -> list[tuple[str, object]]:
    """Items of a JSON array file, or lines of a JSONL file, each with its "file:n" position."""
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TaskError(f"{source}: not UTF-8 text; save it as UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(f"{source}: record {i}", item) for i, item in enumerate(items, start=1)]
    if text.lstrip().startswith("{") and "\n" in text.strip():
        try:  # one JSON object over several lines: a file, not JSON Lines
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            raise TaskError(
                f"{source}: one JSON object, not a list of records; wrap the records in [...] "
                "(or write one object per line, JSON Lines)"
                + (f"; its keys: {', '.join(list(whole)[:5])}" if whole else "")
            )
    result = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                result.append((f"{source}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise TaskError(f"{source}:{number}: not valid JSON ({exc.msg})") from None
    return result


def _object(item: object, where: str) -> dict:
    if not isinstance(item, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(item).__name__}")
    return item


def _keep(item: dict, record: dict) -> dict:
    for key in ("id", "context_ids"):
        if key in item:
            record = {key: item[key], **record} if key == "id" else {**record, key: item[key]}
    return record


def _alpaca(item: object, where: str) -> dict:
    item = _object(item, where)
    if "instruction" not in item or "output" not in item:
        raise TaskError(f'{where}: an Alpaca record needs "instruction" and "output"')
    record = {"instruction": item["instruction"], "input": item.get("input", "")}
    return _keep(item, {**record, "output": item["output"]})


def _sharegpt(item: object, where: str) -> dict:
    item = _object(item, where)
    turns = item.get("conversations")
    if not isinstance(turns, list):
        raise TaskError(f'{where}: a ShareGPT record needs a "conversations" list')
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
            raise TaskError(
                f'{where}: turn {i} needs "from" one of {", ".join(SHAREGPT_ROLES)} '
                "(tool and function turns are not supported)"
            )
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn.get("value")})
    return _keep(item, {"messages": messages})


def _openai(item: object, where: str) -> dict:
    item = _object(item, where)
    if not isinstance(item.get("messages"), list):
        raise TaskError(f'{where}: an OpenAI chat record needs a "messages" list')
    messages = []
    for i, message in enumerate(item["messages"]):
        if not isinstance(message, dict):
            raise TaskError(f"{where}: message {i} is not an object")
        role = "system" if message.get("role") == "developer" else message.get("role")
        if role not in ("system", "user", "assistant"):
            raise TaskError(
                f"{where}: message {i} role {message.get('role')!r} is not supported; use "
                "system, user or assistant (tool calls cannot be converted)"
            )
        messages.append({"role": role, "content": _content(message.get("content"), where, i)})
    return _keep(item, {"messages": messages})


def _content(content: object, where: str, i: int) -> str:
    """OpenAI content: a string, or a list of {"type": "text", "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content
    ):
        return "".join(str(p.get("text", "")) for p in content)
    raise TaskError(f"{where}: message {i} content must be text (images cannot be converted)")


def _columns(available: list[str], mapping: dict[str, str], where: str) -> dict[str, str]:
    """task field -> source column, from --map or the ALIASES; errors name what is missing."""
    chosen = {}
    for field in FIELDS:
        if field in mapping:
            if mapping[field] not in available:
                raise TaskError(
                    f"{where}: no column {mapping[field]!r} (for {field}); columns are "
                    f"{', '.join(available)}"
                )
            chosen[field] = mapping[field]
        else:
            found = next((c for c in ALIASES[field] if c in available), None)
            if found is not None and found not in chosen.values():
                chosen[field] = found
    for field in ("input", "output"):
        if field not in chosen and not (field == "input" and "instruction" in chosen):
            raise TaskError(
                f"{where}: no {field} column; name one with --map {field}=COLUMN (columns are "
                f"{', '.join(available)})"
            )
    return chosen


def _from_columns(values: dict, chosen: dict[str, str], where: str = "") -> dict:
    record = {}
    for field, column in chosen.items():
        value = values.get(column)
        if field == "context_ids":
            record[field] = _id_list(value, where)
        elif field == "id":
            record[field] = value
        else:
            record[field] = "" if value is None else str(value)
    return record


def _id_list(value: object, where: str = "") -> list[str]:
    """context ids: a list, a JSON list, or ;-separated text."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value or "").strip()
    if text.startswith("["):
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskError(
                f"{where}: context_ids {text[:40]!r} is not a JSON list ({exc.msg}); write it as "
                '["doc-1", "doc-2"] or doc-1;doc-2'
            ) from None
        if not isinstance(ids, list):
            raise TaskError(f"{where}: context_ids must be a list of document ids")
        return [str(v) for v in ids]
    return [part.strip() for part in text.split(";") if part.strip()]


def _csv_records(source: Path, mapping: dict[str, str]) -> list[tuple[str, dict]]:
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise TaskError(f"{source}: not UTF-8 text; save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    chosen = _columns(list(reader.fieldnames or []), mapping, str(source))
    # Line numbers count the header as line 1; a quoted field may span lines, hence line_num.
    records = []
    for row in reader:
        where = f"{source}:{reader.line_num}"
        records.append((where, _from_columns(row, chosen, where)))
    return records


def _load_hf(source: Path):
    from datasets import load_from_disk

    try:
        return load_from_disk(str(source))
    except (FileNotFoundError, ValueError) as exc:
        raise TaskError(
            f"{source}: not a dataset saved with save_to_disk ({exc}); pass that folder"
        ) from None


def _hf_splits(source: Path, mapping: dict[str, str]) -> dict[str, list[dict]] | None:
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


def _hf_records(source: Path, mapping: dict[str, str]) -> list[tuple[str, dict]]:
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
        return [_openai(item, f"{where}: row {i}") for i, item in enumerate(dataset, 1)]
    if not mapping and "conversations" in columns:
        return [_sharegpt(item, f"{where}: row {i}") for i, item in enumerate(dataset, 1)]
    chosen = _columns(columns, mapping, where)
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
        record = _from_columns(values, chosen, f"{where}: row {i}")
        parse_row(record, f"{where}: row {i}", default_id="")
        records.append(record)
    return records


def _class_names(dataset, column: str | None) -> list[str] | None:
    """A ClassLabel column's names, so integer labels become their names."""
    feature = dataset.features.get(column) if column else None
    return list(feature.names) if getattr(feature, "names", None) else None


def export(records: list[dict], fmt: str, path: Path, mapping: dict | None = None) -> None:
    """Write task records in `fmt` (for the round-trip tests and for other tools)."""
    path = Path(path)
    if fmt == "hf":
        from datasets import Dataset

        Dataset.from_list(_flat(records, mapping or {})).save_to_disk(str(path))
        return
    if fmt == "csv":
        flat = _flat(records, mapping or {})
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        path.write_text(buffer.getvalue(), encoding="utf-8")
        return
    if fmt == "alpaca":
        items = [
            _keep(r, {k: r.get(k, "") for k in ("instruction", "input", "output")}) for r in records
        ]
        path.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
        return
    if fmt == "sharegpt":
        items = [
            _keep(
                r,
                {
                    "conversations": [
                        {"from": TO_SHAREGPT[m["role"]], "value": m["content"]}
                        for m in r["messages"]
                    ]
                },
            )
            for r in records
        ]
        path.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
        return
    if fmt == "openai":
        path.write_text(
            jsonl([_keep(r, {"messages": r["messages"]}) for r in records]), encoding="utf-8"
        )
        return
    raise TaskError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _flat(records: list[dict], mapping: dict[str, str]) -> list[dict]:
    """Column rows for CSV/HF: task fields renamed by `mapping`, context ids ;-joined."""
    rows = []
    for record in records:
        row = {}
        for field in FIELDS:
            if field in record:
                value = record[field]
                if field == "context_ids":
                    value = ";".join(value)
                row[mapping.get(field, field)] = value
        rows.append(row)
    return rows
