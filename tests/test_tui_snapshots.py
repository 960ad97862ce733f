"""SVG snapshots of each screen (Textual is pinned in pyproject so they don't churn).

The child-process jobs (plan, run, chat) are replaced by fakes with fixed events and a clock
the events move (tests/tui_fakes.py), so no snapshot depends on timings or on this machine.
Update after an intended change with: python -m pytest tests/test_tui_snapshots.py --snapshot-update
"""

import os
from pathlib import Path

from tui_fakes import PLAN, FakeBackends, FakeClock, FakeJob

from adaptwise.tui.app import AdaptwiseApp
from adaptwise.tui.screens.chat import ChatScreen
from adaptwise.tui.screens.results import ResultsScreen
from adaptwise.tui.screens.run import RunScreen
from advisor.questions import Answers
from advisor.recommend import recommend
from experiments.task import load_task

ROOT = Path(__file__).resolve().parent.parent
SIZE = (120, 40)
FIXTURE_RUN = ROOT / "tests/fixtures/run"


def test_task_screen(snap_compare):
    assert snap_compare(AdaptwiseApp(backends=FakeBackends()), terminal_size=SIZE)


def test_questionnaire_screen(snap_compare):
    app = AdaptwiseApp(backends=FakeBackends())
    assert snap_compare(app, press=["down", "enter", "enter"], terminal_size=SIZE)


def test_recommendation_screen(snap_compare, monkeypatch):
    monkeypatch.chdir(ROOT)
    keys = ["down", "enter", "enter", "down", "enter"] + ["enter"] * 9  # the last: skip volume
    app = AdaptwiseApp(backends=FakeBackends())
    assert snap_compare(app, press=keys, terminal_size=SIZE)


def _session(app) -> None:
    session = app.session
    session.task = load_task(ROOT / "demo/support-intents/task.yaml")
    session.recommendation = recommend(Answers())
    session.plan = PLAN
    # relative, so that the snapshot does not depend on where the repository is checked out
    session.out_root = Path("runs")
    session.out_dir = Path(os.path.relpath(FIXTURE_RUN))


def test_results_screen(snap_compare, monkeypatch):
    monkeypatch.chdir(ROOT)
    app = AdaptwiseApp(backends=FakeBackends())

    async def show_results(pilot):
        _session(pilot.app)
        await pilot.app.push_screen(ResultsScreen())
        await pilot.app.workers.wait_for_complete()  # its analysis of the files, in a thread
        await pilot.pause()

    assert snap_compare(app, run_before=show_results, terminal_size=SIZE)


def _started(method: str) -> dict:
    return {"event": "method_started", "task": "support-intents", "method": method}


def _step(step: int, steps: int, split: str, loss: float) -> dict:
    fields = {"step": step, "steps": steps, "split": split, "loss": loss}
    return {"event": "training_step", "method": "lora", **fields}


RUN_EVENTS = [
    _started("zero-shot"),
    {"event": "start", "label": "support-intents · zero-shot", "total": 8},
    {"event": "_tick", "s": 12},
    {"event": "advance", "n": 8},
    {"event": "finish"},
    {"event": "method_finished", "method": "zero-shot"},
    _started("few-shot-embedding"),
    {"event": "start", "label": "support-intents · few-shot-embedding", "total": 8},
    {"event": "_tick", "s": 6},
    {"event": "advance", "n": 3},
    {"event": "_tick", "s": 30},
    {"event": "advance", "n": 5},
]


def test_run_screen(snap_compare, monkeypatch):
    """Mid-run: one method done, one scoring with an ETA, a fine-tuning method training."""
    monkeypatch.chdir(ROOT)
    clock = FakeClock()
    events = RUN_EVENTS + [
        {"event": "finish"},
        {"event": "method_finished", "method": "few-shot-embedding"},
        _started("lora"),
        {"event": "_tick", "s": 120},
        _step(12, 48, "validation", 1.2345),
        _step(12, 48, "train", 1.5012),
        {"event": "_tick", "s": 0},
    ]
    job = FakeJob(events, clock)
    app = AdaptwiseApp(backends=FakeBackends(run_job=job))

    async def show_run(pilot):
        _session(pilot.app)
        await pilot.app.push_screen(
            RunScreen(["zero-shot", "few-shot-embedding", "lora", "full-ft"], clock=clock)
        )
        job.exhausted.wait(10)
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(app, run_before=show_run, terminal_size=SIZE)


def test_chat_screen(snap_compare, monkeypatch):
    monkeypatch.chdir(ROOT)
    chat = FakeJob(
        replies=[
            {"event": "ready", "name": "zero-shot: base model SmolLM2-135M-Instruct"},
            {"event": "reply", "text": "Your order ships within two business days."},
        ]
    )
    app = AdaptwiseApp(backends=FakeBackends(chat_job=chat))

    async def chat_once(pilot):
        _session(pilot.app)
        await pilot.app.push_screen(ResultsScreen())
        await pilot.app.workers.wait_for_complete()  # its analysis of the files, in a thread
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ChatScreen)
        await pilot.press("enter")  # load the first method's model
        await _idle(pilot)
        await pilot.press(*"When will my order ship?", "enter")
        await _idle(pilot)
        assert chat.sent[0] == {"load": {"run_dir": "tests/fixtures/run", "method": "zero-shot"}}
        assert chat.sent[1]["messages"] == [{"role": "user", "content": "When will my order ship?"}]

    assert snap_compare(app, run_before=chat_once, terminal_size=SIZE)


async def _idle(pilot) -> None:
    for _ in range(100):
        await pilot.pause(0.02)
        if not pilot.app.screen.busy:
            break
    await pilot.pause()
