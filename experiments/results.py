"""What results.json records and what an earlier run into the same folder left there: the
format version, the task entry with the fingerprints of its rows, the options record and which
options must match, the rows of predictions.jsonl, and whether a method's stored result can be
trusted (`doubts`): the earlier results a new run keeps, the climbs resume from and the reports
show are only those whose metrics are what their predictions give.

The runner writes these records; the climbs (adaptwise/planning/) and the reports read them back."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from experiments import judge_records
from experiments import metrics as metric_fns
from experiments.context import RunOptions
from experiments.errors import AdaptwiseError
from experiments.numbers import expected, number_problem
from experiments.prediction import Prediction
from experiments.run_files import read_records
from experiments.seeds import prediction_names, seeds_doubt
from experiments.task import Row, Task
from experiments.user_metric import rescore, user_digests, user_metric_names

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
    "served_model",
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
        # the task's own metrics and their files' sha256: a changed file rescores kept methods
        **({"metric_files": user_digests(task)} if task.user_metrics else {}),
        # the LLM judge (experiments/judge_spec.py): another block judges kept methods again
        **({"judge": task.judge.record()} if task.judge is not None else {}),
    }


def options_record(options: RunOptions, served_model: str | None = None) -> dict:
    """The options results.json records. A served model's are its identity: the base URL it
    was reached at (from --base-url or OPENAI_BASE_URL, its password masked), and the weights
    the server says it serves (`served_model`, where it says so), so that a run against
    another server or other weights is not taken for this one."""
    from experiments.api_model import base_url_of, is_api_model, masked_url

    record = asdict(options)
    record["model"] = options.model or "SmolLM2-135M-Instruct (embedded)"
    record["embedder"] = options.embedder or "all-MiniLM-L6-v2 (embedded)"
    if is_api_model(options.model):
        record["base_url"] = masked_url(base_url_of(options.base_url))
        record["served_model"] = served_model
    from experiments.threads import thread_count

    record["threads"] = thread_count()  # torch's intra-op threads (experiments/threads.py)
    return record


def options_differ(stored: dict, record: dict) -> list[str]:
    """The options (MATCHED_OPTIONS and the method settings) in which two runs differ."""
    return [k for k in (*MATCHED_OPTIONS, "extra") if stored.get(k) != record.get(k)]


def previous_results(
    out_dir: Path, task: Task, rows: list[Row], record: dict, log=print
) -> tuple[dict, dict, dict[str, Doubt]]:
    """Results and predictions already in `out_dir` made on the same eval and train rows with
    the same options (MATCHED_OPTIONS), else empty ones; and the methods left out of them because
    their stored result is not what their predictions give (method -> Doubt). Earlier results
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
        return results, predictions, {}
    try:
        old = json.loads(old_path.read_text(encoding="utf-8"))
        if not isinstance(old, dict) or not isinstance(old.get("methods", {}), dict):
            raise ValueError("not a results object")
        records = read_records(out_dir / "predictions.jsonl")
    except (ValueError, OSError, AdaptwiseError) as exc:
        log(f"{out_dir}: the earlier results there cannot be read ({exc}); this run replaces them")
        return results, predictions, {}
    fresh = results["task"]
    differs = options_differ(old.get("options") or {}, record)
    if (old.get("task") or {}).get("eval_fingerprint") != fresh["eval_fingerprint"]:
        return results, predictions, {}  # other eval rows: nothing to compare with
    if (old.get("task") or {}).get("train_fingerprint") != fresh["train_fingerprint"]:
        differs.append("train rows")
    if differs and old.get("methods"):
        log(
            f"{out_dir}: the earlier results there were made with other "
            f"{', '.join(differs)}; this run replaces them"
        )
        return results, predictions, {}
    stored = old.get("methods", {})
    golds = {str(r.id): r.output for r in rows}
    changed = rescore(task, old.get("task") or {}, stored, records, golds)
    if changed:
        log(
            f"{out_dir}: the earlier results there were scored with other metrics ({changed}); "
            "their stored predictions are scored again, no method is rerun for it"
        )
        results["_rescored"] = True  # the files are written again even when no method runs
    if judge_records.forget_stale(old.get("task") or {}, fresh, stored, records):
        log(
            f"{out_dir}: the kept methods were not judged by this judge block; they are judged "
            "now (an answer asked before comes from the cache)"
        )
        results["_rescored"] = True

    def live(rec: dict) -> dict[str, float]:  # the user's function now (MetricError: a line)
        return task.user_values(rec["id"], rec["output"], rec["gold"])

    doubts = doubts_about(fresh, stored, records, golds, live if task.user_metrics else None)
    results["methods"] = {m: v for m, v in stored.items() if m not in doubts}
    kept = {*results["methods"], *prediction_names(results["methods"])}  # and their seeds'
    predictions.update(predictions_of(records, kept))
    if isinstance(old.get("failed"), dict):
        results["failed"] = old["failed"]
    return results, predictions, doubts


def predictions_of(records: list[dict], methods) -> dict[str, list[Prediction]]:
    """The Predictions of `methods` from their (checked: doubts_about) prediction records."""
    fields = set(Prediction.__dataclass_fields__) | {"method", "correct", "scores"}
    predictions: dict[str, list[Prediction]] = {}
    for rec in records:
        if rec["method"] in methods:
            extra = {k: v for k, v in rec.items() if k not in fields}
            prediction = Prediction(
                rec["id"], rec["prompt"], rec["output"], rec["gold"], 0, 0, extra
            )
            predictions.setdefault(rec["method"], []).append(prediction)
    return predictions


@dataclass(frozen=True)
class Doubt:
    """Why a method's stored result cannot be trusted: the run folder's file that says so
    (results.json or predictions.jsonl) and one sentence naming it."""

    file: str
    text: str


# results.json's metric entries of a method and the prediction field each is computed from
# (experiments/run/runner.py summarise).
METRIC_ENTRIES = {
    "metrics": "output",
    "metrics_raw": "output_raw",
    "metrics_calibrated": "output_calibrated",
}


def doubts_about(
    task: dict,
    methods: dict,
    records: list[dict],
    golds: dict[str, str] | None = None,
    user: Callable[[dict], dict[str, float]] | None = None,
) -> dict[str, Doubt]:
    """Method -> why its entry in results.json is not what its rows in predictions.jsonl give,
    for each method that cannot be trusted. Every metric must be a finite number, equal to the
    runner's metric functions on the method's rows, and every row's `scores` and `correct` to
    the per-row ones; each method needs one row per eval row. So must each of its seeds'
    (experiments/seeds.py). `task` is results.json's task entry (kind, metric, labels, n_eval);
    `golds` (row id -> gold answer) are the eval rows the run scores, else every method must
    have n_eval rows, the same ones. The task's own metrics (`metric_files`) are checked as the
    built-in ones where `user` gives a record's values of them (the user's function, in a run);
    without it (a report of a run folder, which runs no code named in a results.json) each row's
    stored values must be numbers from 0 to 1 whose means are the method's."""
    rows: dict[str, list[dict]] = {}
    for rec in records:
        rows.setdefault(rec["method"], []).append(rec)
    doubts: dict[str, Doubt] = {}
    reference: tuple[str, set[str]] | None = None
    for name, entry in methods.items():
        doubt = _doubt(task, entry, rows.get(name, []), golds, user) or seeds_doubt(
            name,
            entry,
            lambda item, own: _doubt(task, item, rows.get(own, []), golds, user),
            _stated,
        )
        if doubt is None and golds is None:  # without the eval rows: the first method's ids
            ids = {str(r["id"]) for r in rows[name]}
            if reference is None:
                reference = (name, ids)
            elif ids != reference[1]:
                other = sorted(ids ^ reference[1])[0]
                doubt = _rows(f"has other eval rows of it than of {reference[0]} (row {other})")
        if doubt is not None:
            doubts[name] = doubt
    return doubts


def _stated(text: str) -> Doubt:
    return Doubt("results.json", f"results.json {text}")


def _rows(text: str) -> Doubt:
    return Doubt("predictions.jsonl", f"predictions.jsonl {text}")


def _doubt(task: dict, entry, recs: list[dict], golds: dict[str, str] | None, user) -> Doubt | None:
    """Why one method's entry cannot be trusted (doubts_about), or None."""
    kind, metric = task["kind"], task["metric"]
    stated = {k: entry[k] for k in METRIC_ENTRIES if k in entry} if isinstance(entry, dict) else {}
    judge = task.get("judge") if isinstance(task.get("judge"), dict) else None
    if not isinstance(stated.get("metrics"), dict) or (
        metric not in stated["metrics"] and metric != "judge"  # a judge may not have spoken yet
    ):
        return _stated(f"has no {metric} for it")
    for key, values in stated.items():
        if not isinstance(values, dict):
            return _stated(f"has {key} {_shown(values)} for it, not a table of metrics")
        for name, value in values.items():
            if not is_number(value):
                return _stated(f"says {_label(name, key)} {_shown(value)}, not a number")
    if not recs:
        return _rows("has none of its rows")
    doubt = _row_doubt(task, recs, golds)
    if doubt is not None:
        return doubt
    own, doubt = _user_values(task, recs, user)
    if doubt is not None:
        return doubt
    text = judge_records.problem(judge, entry, recs)  # the verdicts, re-read from their text
    if text is not None:
        return Doubt(text.split(" ", 1)[0], text)
    own = [{**values, **judge_records.row_scores(judge, r)} for values, r in zip(own, recs)]
    per_row = [
        metric_fns.row_values(kind, metric, r["output"], r["gold"], u) for r, u in zip(recs, own)
    ]
    doubt = _values_doubt(recs, per_row)
    if doubt is not None:
        return doubt
    answers = [r["gold"] for r in recs]
    for key, field in METRIC_ENTRIES.items():
        if key not in stated:
            continue
        outputs = [r.get(field) for r in recs]
        missing = next((r for r, o in zip(recs, outputs) if not isinstance(o, str)), None)
        if missing is not None:
            return _rows(f"has no {field} for its row {missing['id']}")
        rows = [values for values, _ in per_row] if field == "output" else None
        mine = own if field == "output" else None  # the task's own metrics score `output` only
        given = metric_fns.score(kind, outputs, answers, task.get("labels"), rows, mine)
        for name in [*given, *(n for n in stated[key] if n not in given)]:
            label, value = _label(name, key), stated[key].get(name)
            if name not in given:
                return _stated(f"says {label} {_shown(value)}, which a {kind} task does not score")
            if value is None:
                return _stated(f"has no {label} for it")
            if not _same(value, given[name]):
                a, b = _pair(value, given[name])
                return _stated(f"says {label} {a} but its {len(recs)} predictions give {b}")
    return None


def _user_values(task: dict, recs: list[dict], user) -> tuple[list[dict], Doubt | None]:
    """Each record's values of the task's own metrics: `user`'s, else the stored ones, each a
    number from 0 to 1 (else a doubt naming the row)."""
    names = user_metric_names(task)
    if not names:
        return [{} for _ in recs], None
    if user is not None:
        return [user(rec) for rec in recs], None
    out = []
    for rec in recs:
        scores = rec.get("scores") if isinstance(rec.get("scores"), dict) else {}
        for name in names:
            if number_problem(scores.get(name), 0.0, 1.0) is not None:
                shown = _shown(scores.get(name))
                return [], _rows(
                    f"says its row {rec['id']} scored {name} {shown}, not {expected(0.0, 1.0)}"
                )
        out.append({name: float(scores[name]) for name in names})
    return out, None


def _row_doubt(task: dict, recs: list[dict], golds: dict[str, str] | None) -> Doubt | None:
    """A doubt about the method's rows: missing or extra eval rows, a row twice, a field that is
    not text, or another gold answer than the eval row's."""
    ids = [str(r["id"]) for r in recs]
    seen = set(ids)
    if len(seen) < len(ids):
        return _rows(f"has its row {next(i for i in ids if ids.count(i) > 1)} twice")
    if golds is not None:
        missing = [i for i in golds if i not in seen]
        if missing:
            return _rows(
                f"has {len(golds) - len(missing)} of its {len(golds)} eval rows "
                f"(row {missing[0]} is missing)"
            )
        extra = next((i for i in ids if i not in golds), None)
        if extra is not None:
            return _rows(f"has a row {extra} of it, which is not an eval row of this run")
    elif isinstance(task.get("n_eval"), int) and len(ids) != task["n_eval"]:
        return _rows(f"has {len(ids)} of its {task['n_eval']} eval rows")
    for rec, row_id in zip(recs, ids):
        for field in ("prompt", "output", "gold"):
            if not isinstance(rec.get(field), str):
                return _rows(f"has no {field} for its row {row_id}")
        if golds is not None and rec["gold"] != golds[row_id]:
            return _rows(f"gives its row {row_id} the gold {rec['gold']!r}, not the eval row's")
    return None


def _values_doubt(recs: list[dict], per_row: list[tuple[dict, bool]]) -> Doubt | None:
    """A row whose `scores` or `correct` in predictions.jsonl are not its output's."""
    for rec, (values, correct) in zip(recs, per_row):
        row_id = rec["id"]
        scores = rec.get("scores", values)  # records from before `scores` was written
        if not isinstance(scores, dict):
            return _rows(f"has scores {_shown(scores)} for its row {row_id}")
        for name in [*values, *(n for n in scores if n not in values)]:
            if name not in values or not _same(scores.get(name), values[name]):
                a, b = _pair(scores.get(name), values.get(name))
                return _rows(f"says its row {row_id} scored {name} {a} but its output gives {b}")
        if rec.get("correct", correct) != correct:
            said, real = ("right", "wrong") if rec["correct"] else ("wrong", "right")
            return _rows(f"says its row {row_id} is {said} but its output is {real}")
    return None


def is_number(value) -> bool:
    """A finite int or float (not a bool, not NaN or infinite): what a metric may be."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(stated, given: float) -> bool:
    return is_number(stated) and math.isclose(stated, given, rel_tol=1e-9, abs_tol=1e-9)


def _label(name: str, key: str) -> str:
    return name if key == "metrics" else f"{name} ({key.removeprefix('metrics_')})"


def _shown(value) -> str:
    """A value as results.json or predictions.jsonl writes it: 0.990, NaN, "NaN", null."""
    if is_number(value):
        return f"{value:.3f}"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _pair(stated, given) -> tuple[str, str]:
    """Both values, with enough digits to tell them apart."""
    a, b = _shown(stated), _shown(given)
    if a == b and is_number(stated) and is_number(given):
        return repr(float(stated)), repr(float(given))
    return a, b
