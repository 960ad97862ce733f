"""Task records written back in a source format (`export`): for the round-trip tests, and so a
cleaned task can go back to another tool."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from experiments.data.columns import FIELDS
from experiments.data.convert import FORMATS
from experiments.data.json_formats import TO_SHAREGPT, keep_ids
from experiments.data.task_folder_writer import jsonl
from experiments.errors import TaskError


def export(records: list[dict], fmt: str, path: Path, mapping: dict | None = None) -> None:
    """Write task records in `fmt` (for the round-trip tests and for other tools)."""
    path = Path(path)
    if fmt == "hf":
        from datasets import Dataset

        Dataset.from_list(flat_rows(records, mapping or {})).save_to_disk(str(path))
        return
    if fmt == "csv":
        flat = flat_rows(records, mapping or {})
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        path.write_text(buffer.getvalue(), encoding="utf-8")
        return
    if fmt == "alpaca":
        items = [
            keep_ids(r, {k: r.get(k, "") for k in ("instruction", "input", "output")})
            for r in records
        ]
        path.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
        return
    if fmt == "sharegpt":
        items = [
            keep_ids(
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
            jsonl([keep_ids(r, {"messages": r["messages"]}) for r in records]), encoding="utf-8"
        )
        return
    raise TaskError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def flat_rows(records: list[dict], mapping: dict[str, str]) -> list[dict]:
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
