"""A run folder read back for the reports: its results.json and its prediction records, checked
enough that a damaged or foreign folder gets one clear line."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.errors import AdaptwiseError


def load_run(folder: Path) -> tuple[dict, list[dict]]:
    """results.json and predictions.jsonl of a run folder; one clear error for bad input."""
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
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError):
        raise AdaptwiseError(f"{path}: not an adaptwise results.json") from None
    for name, entry in results["methods"].items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict) or results["task"]["metric"] not in metrics:
            raise AdaptwiseError(
                f"{path}: method {name!r} has no {results['task']['metric']} (a damaged "
                f"results.json); rerun it with `adaptwise run ... --rerun {name}`"
            )
    records: list[dict] = []
    pred_path = folder / "predictions.jsonl"
    if pred_path.is_file():
        for number, line in enumerate(pred_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["method"], rec["id"]  # noqa: B018
            except (json.JSONDecodeError, KeyError, TypeError):
                raise AdaptwiseError(f"{pred_path}:{number}: not a prediction record") from None
            records.append(rec)
    return results, records
