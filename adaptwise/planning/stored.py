"""What the ladder, sweeps and learning curves read back from a run folder: which methods already
finished there with the same eval rows and options (so an interrupted climb resumes), a method's
metric with its bootstrap interval, and extra sections of results.json (`ladder`, `sweep`,
`learning_curve`) rewritten together with the reports."""

from __future__ import annotations

from pathlib import Path

from experiments.results import (
    RESULTS_VERSION,
    eval_fingerprint,
    previous_results,
    task_record,
)
from experiments.run.runner import claim_run_folder, write_outputs
from experiments.run_files import read_results, write_results, write_run_files


def finished_methods(
    out_dir: Path,
    task,
    rows,
    options_record: dict,
    match: dict | None = None,
    log=None,
) -> set[str]:
    """Methods whose results in `out_dir` the runner would keep (experiments/results.py
    previous_results: the same eval and train rows, the same options, metrics that are what
    their predictions give) and, where given, with the same values of the `match` keys at the
    top level of results.json. A stored result that cannot be trusted is not finished: it is
    taken out of the folder's files (so its reports never show it), with one line to `log`."""
    out_dir = Path(out_dir)
    old = read_results(out_dir)
    if not old or any(old.get(key) != value for key, value in (match or {}).items()):
        return set()
    results, predictions, doubts = previous_results(out_dir, task, rows, options_record, _quiet)
    if doubts or results.pop("_rescored", False):  # left out, or their metrics scored again
        for name, doubt in doubts.items():
            (log or _quiet)(f"{name}: {doubt.text}; not kept (scored again if this climb runs it)")
        kept = {k: v for k, v in old.items() if k not in ("methods", "task")}
        write_outputs(out_dir, {**kept, **results}, predictions)
    return set(results["methods"])


def _quiet(_message: str) -> None:
    """previous_results' lines are the runner's to say, when the climb runs a method."""


def metric_interval(out_dir: Path, method: str, metric: str, seed: int) -> dict | None:
    """{"estimate", "low", "high"} of `metric` for `method`: the same percentile bootstrap over
    eval rows (2,000 resamples, the run's seed) as the report's intervals."""
    from experiments.report import stats
    from experiments.report.comparisons import statistic_for
    from experiments.report.run_folder import load_run

    results, records = load_run(Path(out_dir))
    recs = [r for r in records if r["method"] == method]
    if not recs:  # the method failed: load_run refuses a result without its predictions
        return None
    statistic = statistic_for(results["task"], metric, recs)
    interval = stats.bootstrap_ci(statistic, len(recs), seed=seed)
    return {k: round(v, 4) for k, v in interval.to_dict().items()}


def store_sections(out_dir: Path, sections: dict) -> None:
    """Set top-level keys of results.json and re-render report.md and report.html."""
    from experiments.report.run_folder import load_run
    from experiments.report.write import write_reports

    out_dir = Path(out_dir)
    results, records = load_run(out_dir)
    results.update(sections)
    write_results(out_dir, results)
    write_reports(out_dir, results, records)


def ensure_results(out_dir: Path, task, rows, options_record: dict) -> None:
    """An empty results.json (no methods yet) so that sections can be stored before any method
    ran in `out_dir` (a ladder whose first rung is skipped, a curve without the full-data point)."""
    out_dir = Path(out_dir)
    claim_run_folder(out_dir, task)
    old = read_results(out_dir)
    fingerprint = eval_fingerprint(rows)
    if old and old.get("task", {}).get("eval_fingerprint") == fingerprint:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "version": RESULTS_VERSION,
        "task": task_record(task, rows),
        "methods": {},
        "options": options_record,
    }
    write_run_files(out_dir, results, [])
