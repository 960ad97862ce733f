"""write_reports: analyse a run once, then write its report.md and report.html (each atomically,
never over a report adaptwise did not write). The runner calls it after every method, and
`adaptwise report DIR` to re-render a run."""

from __future__ import annotations

from pathlib import Path

from experiments.atomic import write_text_atomic


def write_reports(
    out_dir: Path,
    results: dict,
    records: list[dict],
    prices: dict | None = None,
    seed: int | None = None,
    resamples: int | None = None,
) -> None:
    from experiments.outputs import claim
    from experiments.report.analysis import analyse
    from experiments.report.html import render_html
    from experiments.report.markdown import render_report
    from experiments.report.stats import RESAMPLES

    analysis = analyse(results, records, prices, seed, resamples or RESAMPLES)
    claim(Path(out_dir), "run", ("report.md", "report.html"))
    write_text_atomic(Path(out_dir) / "report.md", render_report(results, analysis))
    html = render_html(results, analysis, Path(out_dir))
    write_text_atomic(Path(out_dir) / "report.html", html)
