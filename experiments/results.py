"""What results.json records and what an earlier run into the same folder left there: the
format version, the task entry with the fingerprints of its rows, the options record and which
options must match, and the earlier results and predictions that a new run keeps.

The runner writes these records; the climbs (advisor/planning/) read them back."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

from experiments.context import RunOptions
from experiments.methods import Prediction
from experiments.task import Row, Task

RESULTS_VERSION = 1


# Options that change what a method produces; `limit` is covered by the eval fingerprint.
MATCHED_OPTIONS = (
    "model",
    "embedder",
    "seed",
    "k",
    "calibrate",
    "max_new_tokens",
    "trust_remote_code",
    "precision",
    "base_url",
    "tokenizer",
)


def eval_fingerprint(rows: list[Row]) -> str:
    digest = hashlib.sha256()
    for r in rows:
        digest.update(json.dumps([r.id, list(r.messages), r.output], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def task_record(task: Task, rows: list[Row]) -> dict:
    """The `task` entry of results.json for scoring `rows` of `task`."""
    return {
        "name": task.name,
        "kind": task.kind,
        "path": str(task.path),
        "metric": task.metric,
        "labels": task.labels,
        "n_train": len(task.train),
        "n_eval": len(rows),
        "n_eval_total": len(task.eval),
        "eval_fingerprint": eval_fingerprint(rows),
        "train_fingerprint": eval_fingerprint(task.train),
        "has_corpus": task.corpus is not None,
    }


def options_record(options: RunOptions) -> dict:
    record = asdict(options)
    record["model"] = options.model or "SmolLM2-135M-Instruct (embedded)"
    record["embedder"] = options.embedder or "all-MiniLM-L6-v2 (embedded)"
    from experiments.threads import thread_count

    record["threads"] = thread_count()  # torch's intra-op threads (experiments/threads.py)
    return record


def options_differ(stored: dict, record: dict) -> list[str]:
    """The options (MATCHED_OPTIONS and the method settings) in which two runs differ."""
    return [k for k in (*MATCHED_OPTIONS, "extra") if stored.get(k) != record.get(k)]


def read_results(out_dir: Path) -> dict | None:
    path = Path(out_dir) / "results.json"
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


def previous_results(
    out_dir: Path, task: Task, rows: list[Row], record: dict, log=print
) -> tuple[dict, dict]:
    """Results and predictions already in `out_dir` made on the same eval and train rows with
    the same options (MATCHED_OPTIONS), else empty ones. Earlier results
    that do not match, or that cannot be read, are replaced by this run's, with one line."""
    results = {
        "version": RESULTS_VERSION,
        "task": task_record(task, rows),
        "methods": {},
        "_task": task,
    }
    predictions: dict[str, list[Prediction]] = {}
    old_path = out_dir / "results.json"
    if not old_path.is_file():
        return results, predictions
    try:
        old = json.loads(old_path.read_text(encoding="utf-8"))
        if not isinstance(old, dict) or not isinstance(old.get("methods", {}), dict):
            raise ValueError("not a results object")
        old_predictions = read_predictions(out_dir / "predictions.jsonl")
    except (ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        log(f"{out_dir}: the earlier results there cannot be read ({exc}); this run replaces them")
        return results, predictions
    fresh = results["task"]
    differs = options_differ(old.get("options") or {}, record)
    if (old.get("task") or {}).get("eval_fingerprint") != fresh["eval_fingerprint"]:
        return results, predictions  # other eval rows: nothing to compare with
    if (old.get("task") or {}).get("train_fingerprint") != fresh["train_fingerprint"]:
        differs.append("train rows")
    if differs and old.get("methods"):
        log(
            f"{out_dir}: the earlier results there were made with other "
            f"{', '.join(differs)}; this run replaces them"
        )
        return results, predictions
    results["methods"] = {
        m: v for m, v in old.get("methods", {}).items() if m in old_predictions and "metrics" in v
    }
    predictions.update({m: p for m, p in old_predictions.items() if m in results["methods"]})
    if isinstance(old.get("failed"), dict):
        results["failed"] = old["failed"]
    return results, predictions


def read_predictions(path: Path) -> dict[str, list[Prediction]]:
    fields = set(Prediction.__dataclass_fields__)
    predictions: dict[str, list[Prediction]] = {}
    if not path.is_file():
        return predictions
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            extra = {
                k: v for k, v in rec.items() if k not in fields | {"method", "correct", "scores"}
            }
            prediction = Prediction(
                rec["id"], rec["prompt"], rec["output"], rec["gold"], 0, 0, extra
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name} line {number}: {type(exc).__name__}") from None
        predictions.setdefault(rec["method"], []).append(prediction)
    return predictions
