"""The two files that hold a run: results.json (what each method scored, how it ran) and
predictions.jsonl (one record per method and eval row). Every read and write of them goes
through here: results.json as strict JSON, both replaced atomically, predictions first so that
a results.json on disk never names rows its predictions.jsonl lacks. What they must hold, and
when a stored result is trusted, is experiments/results.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

from experiments.atomic import write_text_atomic
from experiments.errors import AdaptwiseError

RESULTS = "results.json"
PREDICTIONS = "predictions.jsonl"


def write_run_files(out_dir: Path, results: dict, records: list[dict]) -> None:
    """predictions.jsonl (`records`, in order), then results.json, each atomically."""
    lines = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    write_text_atomic(Path(out_dir) / PREDICTIONS, lines)
    write_results(out_dir, results)


def write_results(out_dir: Path, results: dict) -> None:
    """results.json alone (a section added, a verification recorded), atomically."""
    write_text_atomic(Path(out_dir) / RESULTS, results_text(results))


def read_results(out_dir: Path) -> dict | None:
    """A folder's results.json, None when there is none or it cannot be read as JSON."""
    path = Path(out_dir) / RESULTS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None


def results_text(results: dict) -> str:
    """The text of results.json: strict JSON (RFC 8259), so a number that is not finite (a
    diverged training loss) is written as null, never as NaN or Infinity."""
    return json.dumps(_finite(results), indent=2, allow_nan=False) + "\n"


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def read_records(path: Path) -> list[dict]:
    """The rows of a predictions.jsonl in order (none when there is no such file); one
    AdaptwiseError naming the line for a row that is not a prediction record."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise AdaptwiseError(f"{path}: not UTF-8 text, not a predictions.jsonl") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("method"), str)
            or not isinstance(rec.get("id"), str | int)
            or isinstance(rec.get("id"), bool)
        ):
            raise AdaptwiseError(f"{path}:{number}: not a prediction record")
        records.append(rec)
    return records
