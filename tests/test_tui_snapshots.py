"""SVG snapshots of each screen (Textual is pinned in pyproject so they don't churn).

Update after an intended change with: python -m pytest tests/test_tui_snapshots.py --snapshot-update
"""

import os
from pathlib import Path

from advisor.questions import Answers
from advisor.recommend import recommend
from advisor.tui.app import AdaptwiseApp
from advisor.tui.screens.results import ResultsScreen
from experiments.task import load_task

ROOT = Path(__file__).resolve().parent.parent
SIZE = (120, 40)


def test_task_screen(snap_compare):
    assert snap_compare(AdaptwiseApp(), terminal_size=SIZE)


def test_questionnaire_screen(snap_compare):
    assert snap_compare(AdaptwiseApp(), press=["down", "enter", "enter"], terminal_size=SIZE)


def test_recommendation_screen(snap_compare):
    keys = ["down", "enter", "enter", "down", "enter"] + ["enter"] * 7
    assert snap_compare(AdaptwiseApp(), press=keys, terminal_size=SIZE)


def test_results_screen(snap_compare, monkeypatch):
    monkeypatch.chdir(ROOT)
    app = AdaptwiseApp()

    async def show_results(pilot):
        session = pilot.app.session
        session.task = load_task(ROOT / "demo/support-intents/task.yaml")
        session.recommendation = recommend(Answers())
        # relative, so that the snapshot does not depend on where the repository is checked out
        session.out_dir = Path(os.path.relpath(ROOT / "tests/fixtures/run"))
        await pilot.app.push_screen(ResultsScreen())
        await pilot.pause()

    assert snap_compare(app, run_before=show_results, terminal_size=SIZE)
