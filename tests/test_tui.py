"""The TUI driven by keyboard with Pilot, on a demo task with a small limit."""

import asyncio
import json
from pathlib import Path

from advisor.tui.app import AdaptwiseApp
from advisor.tui.screens.questionnaire import QuestionnaireScreen
from advisor.tui.screens.recommendation import RecommendationScreen
from advisor.tui.screens.results import ResultsScreen
from advisor.tui.screens.task import TaskScreen

ROOT = Path(__file__).resolve().parent.parent


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def wait_for_screen(pilot, kind, timeout: float = 300.0) -> None:
    waited = 0.0
    while not isinstance(pilot.app.screen, kind) and waited < timeout:
        await pilot.pause(0.2)
        waited += 0.2
    assert isinstance(pilot.app.screen, kind), f"still on {type(pilot.app.screen).__name__}"


def test_whole_flow_by_keyboard(tmp_path):
    async def flow():
        app = AdaptwiseApp(limit=2, out_root=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            assert isinstance(app.screen, TaskScreen)
            await pilot.press("down", "enter")  # the second demo task: support-intents
            assert isinstance(app.screen, QuestionnaireScreen)
            assert "question 1 of 9" in text_of(app, "#progress")
            assert "Why it matters" in text_of(app, "#why")
            await pilot.press("enter")  # external knowledge: keep "No"
            await pilot.press("down", "enter")  # custom style: "Yes"
            await pilot.press("left")  # back to question 2, answer kept
            assert "question 2 of 9" in text_of(app, "#progress")
            await pilot.press("enter")
            for _ in range(7):
                await pilot.press("enter")
            assert isinstance(app.screen, RecommendationScreen)
            assert app.session.answers.custom_style == "yes"
            ladder = text_of(app, "#ladder")
            assert "zero-shot" in ladder and "custom tone" in ladder  # a reason citing an answer
            await pilot.press("s")
            assert (tmp_path / "support-intents" / "answers.yaml").is_file()
            app.screen.runnable = ["zero-shot", "few-shot-jaccard"]  # keep the test quick
            await pilot.press("r")
            await wait_for_screen(pilot, ResultsScreen)
            assert "The advice" in text_of(app, "#verdict") or "Contradicts" in text_of(
                app, "#verdict"
            )
            rows_before = app.screen.query_one("#examples").row_count
            await pilot.press("d")
            assert app.screen.query_one("#examples").row_count == 2 >= rows_before
        return app

    asyncio.run(flow())
    results = json.loads((tmp_path / "support-intents" / "results.json").read_text())
    assert list(results["methods"]) == ["zero-shot", "few-shot-jaccard"]
    assert results["task"]["n_eval"] == 2


def test_bad_task_path_shows_one_clear_error(tmp_path):
    bad = tmp_path / "task.yaml"
    bad.write_text("kind: nonsense\ntrain: a.jsonl\neval: b.jsonl\n")

    async def flow():
        app = AdaptwiseApp(limit=2, out_root=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("tab")
            await pilot.press(*str(bad))
            await pilot.press("enter")
            assert isinstance(app.screen, TaskScreen)
            assert "kind 'nonsense' is not one of" in text_of(app, "#error")

    asyncio.run(flow())
