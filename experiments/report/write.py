"""write_reports: analyse a run once, then write its report.md and report.html (each
atomically, never over a report adaptwise did not write). The runner calls it once a run's
methods are done (experiments/run/runner.py _write_due_reports), and `adaptwise report DIR` to
re-render a run. write_combined writes a combined report's folder (`adaptwise report DIR1 DIR2
--out FOLDER`): its results.json, predictions.jsonl and reports."""

from __future__ import annotations

from pathlib import Path

from experiments.atomic import write_text_atomic

COMBINED_FILES = ("results.json", "predictions.jsonl", "report.md", "report.html")


def write_reports(
    out_dir: Path,
    results: dict,
    records: list[dict],
    prices: dict | None = None,
    seed: int | None = None,
    resamples: int | None = None,
    overrides: dict | None = None,
    command: str = "run",
) -> dict:
    """`prices` price every method alike; `overrides` (the command line's) go over each method's
    own (experiments/report/costs.py method_prices). `command` owns the folder's manifest.
    Returns the analysis both reports were rendered from."""
    from experiments.owned_files import claim
    from experiments.report.analysis import analyse
    from experiments.report.html import render_html
    from experiments.report.markdown import render_report
    from experiments.report.stats import RESAMPLES

    analysis = analyse(results, records, prices, seed, resamples or RESAMPLES, overrides)
    claim(Path(out_dir), command, ("report.md", "report.html"))
    write_text_atomic(Path(out_dir) / "report.md", render_report(results, analysis))
    html = render_html(results, analysis, Path(out_dir))
    write_text_atomic(Path(out_dir) / "report.html", html)
    return analysis


def write_combined(
    out_dir: Path,
    results: dict,
    records: list[dict],
    overrides: dict | None = None,
    seed: int | None = None,
    resamples: int | None = None,
) -> None:
    """The combined results.json and predictions.jsonl (atomically), then its reports; the
    folder is claimed for `adaptwise report` (check_replaceable comes first, in the command)."""
    from experiments.owned_files import claim
    from experiments.run_files import write_run_files

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claim(out_dir, "report", COMBINED_FILES)
    write_run_files(out_dir, results, records)
    write_reports(out_dir, results, records, None, seed, resamples, overrides, "report")
