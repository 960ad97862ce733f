"""Read a task's files without stopping at the first problem.

`experiments.task.load_task` stops at the first bad row, which is right for a run. `data check`
must report every bad row, so this reads the task YAML itself, parses each line with the same
`parse_row`, and collects the errors ("file:line: what to fix") instead of raising them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import TaskError
from experiments.task import KINDS, Row, parse_row, read_task_yaml

SPLITS = ("train", "eval")


@dataclass
class RawTask:
    """A task file and its rows as far as they could be read, with every problem found."""

    path: Path
    spec: dict
    kind: str
    rows: dict[str, list[Row]]  # split -> rows that parsed
    files: dict[str, Path]  # split -> data file
    labels: list[str] = field(default_factory=list)  # declared in the YAML, else []
    corpus: Path | None = None
    errors: list[str] = field(default_factory=list)  # "file:line: what to fix"

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.path.stem)


def normalise(text: str) -> str:
    """Case-folded text with runs of whitespace collapsed (what "exact" comparisons use)."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def input_key(row: Row) -> str:
    """A row's conversation before the answer, normalised; equal keys mean the same input."""
    return normalise("\n".join(f"{m['role']}: {m['content']}" for m in row.messages))


def input_output(row: Row) -> tuple[str, str]:
    """A row's input text (every message before the answer) and its output: what
    near-duplicate matching compares (`near_duplicates.row_pairs`)."""
    return "\n".join(m["content"] for m in row.messages), row.output


def read_spec(path: Path) -> dict:
    """The task YAML as a mapping; a file that cannot be read at all is a TaskError."""
    spec = read_task_yaml(path)
    for key in ("kind", *SPLITS):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise TaskError(f"{path}: missing required key {key!r}")
    if spec["kind"] not in KINDS:
        raise TaskError(f"{path}: kind {spec['kind']!r} is not one of {', '.join(KINDS)}")
    return spec


def read_task(path: str | Path) -> RawTask:
    """Read the task YAML and both splits, collecting every row error instead of stopping."""
    path = Path(path)
    spec = read_spec(path)
    base = path.parent
    task = RawTask(path=path, spec=spec, kind=spec["kind"], rows={}, files={})
    for split in SPLITS:
        file = base / spec[split]
        task.files[split] = file
        if not file.is_file():
            raise TaskError(f"{path}: {split} file {spec[split]!r} not found next to the task file")
        task.rows[split] = read_rows(file, task.errors)
        if not task.rows[split]:
            task.errors.append(f"{file}: the {split} file has no valid rows")
    labels = spec.get("labels")
    if isinstance(labels, list):
        task.labels = [str(x).strip() for x in labels]
    if spec.get("corpus"):
        task.corpus = base / str(spec["corpus"])
    return task


def read_rows(path: Path, errors: list[str]) -> list[Row]:
    """Every row of a JSONL file that parses; each bad line adds one message to `errors`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        errors.append(f"{path}: not UTF-8 text; save it as UTF-8 JSON Lines")
        return []
    rows: list[Row] = []
    ids: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = parse_row(json.loads(line), where, default_id=f"{path.stem}-{number}")
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: not valid JSON ({exc.msg}); one JSON object per line")
            continue
        except TaskError as exc:
            errors.append(str(exc))
            continue
        if row.id in ids:
            errors.append(f"{where}: duplicate id {row.id!r}; ids must be unique in a file")
            continue
        ids.add(row.id)
        rows.append(row)
    return rows
