"""report.html in a real headless browser: every section visible with real figures, the
disagreement filter hides rows, and the page makes no network request.

Needs Debian's Chromium (`apt-get install -y chromium`; `bash install.sh test` installs it) and
the `playwright` package (no `playwright install`: the system browser is used). Without them the
test skips locally and fails when the CI environment variable is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_report import make_qa_run, make_run

from experiments.report.run_folder import load_run
from experiments.report.write import write_reports

CHROMIUM = os.environ.get("ADAPTWISE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str):
    message = f"{reason}; run `bash install.sh test` (installs chromium with apt-get)"
    if os.environ.get("CI"):
        pytest.fail(f"report.html browser test cannot run in CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install playwright)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


def _images_rendered(page, selector: str) -> list[tuple[int, int]]:
    return page.eval_on_selector_all(
        selector, "els => els.map(e => [e.complete ? e.naturalWidth : 0, e.naturalHeight])"
    )


def test_report_html_in_browser(browser, tmp_path):
    run = make_run(tmp_path / "run", n=40)
    results, records = load_run(run)
    write_reports(run, results, records)
    page, requests, errors = _open(browser, run / "report.html")

    for section in ("verdict", "summary", "ci", "pareto", "significance", "training", "matrix"):
        assert page.is_visible(f"#{section}"), section
    assert page.is_visible("#forgetting")
    assert "Quality: lora" in page.inner_text("#verdict")
    summary = page.inner_text("#summary-table")
    assert "few-shot-jaccard" in summary and "0.750" in summary and "[" in summary

    # real figures: the CI plot, the Pareto plot and the loss curve decode to pictures
    for selector in ("#ci img", "#pareto img", "#training .loss-curve img"):
        sizes = _images_rendered(page, selector)
        assert sizes and all(w > 100 and h > 100 for w, h in sizes), (selector, sizes)
        assert page.is_visible(selector)
    assert "0.470" in page.inner_text("#forgetting-table")

    rows = page.locator("#matrix-table tbody tr")
    total = rows.count()
    assert total == 40
    disagree = page.locator('#matrix-table tbody tr[data-disagree="1"]').count()
    assert 0 < disagree < total
    assert page.locator("#matrix-table tbody tr:visible").count() == total
    page.check("#disagree-only")
    assert page.locator("#matrix-table tbody tr:visible").count() == disagree
    assert f"{disagree} of {total} rows shown" in page.inner_text("#matrix-count")
    page.uncheck("#disagree-only")
    assert page.locator("#matrix-table tbody tr:visible").count() == total

    # nothing but the file itself (and its inline data: images) was requested
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert errors == []
    page.close()


def test_rag_report_html_shows_retrieval_and_passages(browser, tmp_path):
    run = make_qa_run(tmp_path / "qa")
    results, records = load_run(run)
    write_reports(run, results, records)
    page, requests, errors = _open(browser, run / "report.html")
    assert page.is_visible("#retrieval")
    assert "0.950" in page.inner_text("#retrieval-table")
    first = page.locator("#matrix-table tbody tr").first
    assert "passages: doc0#0, doc1#2" in first.inner_text()
    assert not page.locator("#training").count()  # no fine-tuned method
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert errors == []
    page.close()
