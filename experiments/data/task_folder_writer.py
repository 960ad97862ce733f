"""Write a task folder (task.yaml and JSONL files) all at once, or not at all.

The folder is built in a temporary folder next to the target and renamed into place, so an
interrupted run leaves either the old folder or the new one, never a mix.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml

from experiments.atomic import set_default_modes, swap_in
from experiments.owned_files import MANIFEST, check_replaceable, manifest_text
from experiments.task import Row


def row_to_json(row: Row) -> dict:
    """A row in the simplest task format that holds it: input/output, else chat messages."""
    if len(row.messages) == 1 and row.messages[0]["role"] == "user":
        obj = {"id": row.id, "input": row.messages[0]["content"], "output": row.output}
    else:
        messages = [*row.messages, {"role": "assistant", "content": row.output}]
        obj = {"id": row.id, "messages": [dict(m) for m in messages]}
    if row.context_ids:
        obj["context_ids"] = list(row.context_ids)
    return obj


def jsonl(records: list[dict]) -> str:
    """JSON Lines text, one object per line, non-ASCII kept as is."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def rows_jsonl(rows: list[Row]) -> str:
    """Rows as JSONL, with ids made unique within the file (a suffix on repeats)."""
    seen: set[str] = set()
    records = []
    for row in rows:
        record = row_to_json(row)
        base, n = str(record["id"]), 1
        while record["id"] in seen:
            n += 1
            record["id"] = f"{base}-{n}"
        seen.add(record["id"])
        records.append(record)
    return jsonl(records)


def write_task_dir(
    out: Path,
    spec: dict,
    files: dict[str, str],
    command: str,
    overwrite: bool = False,
    inputs: Iterable[Path | str | None] = (),
) -> Path:
    """Write `task.yaml` (from `spec`) and `files` (name -> text) as the folder `out`, with the
    manifest that marks it as written by `command` (experiments/owned_files.py)."""
    out = Path(out)
    check_replaceable(out, command, overwrite, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        written = {**files, "task.yaml": dump_spec(spec)}
        entries = {Path(name).parts[0] for name in written}
        written[MANIFEST] = manifest_text(command, entries)
        for name, text in written.items():
            (build / name).parent.mkdir(parents=True, exist_ok=True)
            (build / name).write_text(text, encoding="utf-8")
        set_default_modes(build)
        swap_in(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out / "task.yaml"


def dump_spec(spec: dict) -> str:
    """The task YAML, keys in the order given."""
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)
