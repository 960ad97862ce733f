"""A run folder read back for the reports: its results.json and its prediction records, checked
enough that a damaged or foreign folder gets one clear line, and every method's stored result
checked against its predictions (experiments/results.py doubts_about): a report never shows a
metric that its predictions do not give."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.errors import AdaptwiseError
from experiments.metrics import METRICS_BY_KIND
from experiments.results import doubts_about
from experiments.run_files import read_records


def load_run(folder: Path) -> tuple[dict, list[dict]]:
    """results.json and predictions.jsonl of a run folder; one clear error for bad input, and
    for a method whose stored result is not what its predictions give."""
    folder = Path(folder)
    if not folder.exists():
        raise AdaptwiseError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise AdaptwiseError(f"{folder}: not a folder; give a run's output folder (--out)")
    path = folder / "results.json"
    if not path.is_file():
        raise AdaptwiseError(f"{folder}: not an adaptwise run folder (no results.json)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results.get("task"), dict) or not isinstance(
            results.get("methods"), dict
        ):
            raise KeyError("task")
        for key in ("name", "kind", "metric"):
            results["task"][key]  # noqa: B018
        if results["task"]["kind"] not in METRICS_BY_KIND:
            raise KeyError("kind")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError):
        raise AdaptwiseError(f"{path}: not an adaptwise results.json") from None
    records = read_records(folder / "predictions.jsonl")
    doubts = doubts_about(results["task"], results["methods"], records)
    if doubts:
        name, doubt = next(iter(doubts.items()))
        if results.get("combined_from"):
            then = f"combine its runs again (`adaptwise report DIR1 DIR2 --out {folder}`)"
        else:
            then = f"rerun the same `adaptwise run --out {folder}` (it redoes or drops {name})"
        raise AdaptwiseError(f"{folder / doubt.file}: {name}: {doubt.text}; {then}")
    return results, records
