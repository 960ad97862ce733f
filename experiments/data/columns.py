"""Column sources (CSV files and saved datasets' tables): which column holds which task field,
from `--map` or the usual names, and a row of columns as a task record; the CSV reader."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from experiments.errors import TaskError

FIELDS = ("id", "instruction", "input", "output", "context_ids")


# Columns tried, in order, for each field when --map does not name one.
ALIASES = {
    "id": ("id",),
    "instruction": ("instruction",),
    "input": ("input", "question", "prompt", "text", "query"),
    "output": ("output", "answer", "response", "completion", "label"),
    "context_ids": ("context_ids",),
}


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


def pick_columns(available: list[str], mapping: dict[str, str], where: str) -> dict[str, str]:
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


def from_columns(values: dict, chosen: dict[str, str], where: str = "") -> dict:
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


def csv_records(source: Path, mapping: dict[str, str]) -> list[tuple[str, dict]]:
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise TaskError(f"{source}: not UTF-8 text; save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    chosen = pick_columns(list(reader.fieldnames or []), mapping, str(source))
    # Line numbers count the header as line 1; a quoted field may span lines, hence line_num.
    records = []
    for row in reader:
        where = f"{source}:{reader.line_num}"
        records.append((where, from_columns(row, chosen, where)))
    return records
