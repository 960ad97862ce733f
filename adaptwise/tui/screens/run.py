"""The run: each method's progress (training steps and loss for fine-tuning, scored rows,
ETA). The runner works in a child process (adaptwise/tui/jobs.py), so importing torch and running
the model never hold this process's GIL; a worker thread here only waits for its events. What
a method is doing comes from the runner's and the trainer's typed events
(experiments/progress_events.py), read field by field; log lines are only shown."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from adaptwise.tui.shown import shown
from experiments.progress_events import (
    MethodFailed,
    MethodFinished,
    MethodStarted,
    TrainingStep,
    from_fields,
)
from experiments.report.formatting import format_short


@dataclass
class MethodState:
    phase: str = "waiting"  # waiting | preparing | scoring | done | failed
    failure: str = ""  # why it failed ("out of memory", ...)
    started: float = 0.0  # when preparation began
    scoring_started: float = 0.0
    step: int = 0
    steps: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    done_rows: int = 0
    rows: int = 0


class RunScreen(Screen):
    BINDINGS = [
        Binding("c,escape", "cancel", "Cancel"),
        Binding("enter", "results", "Results", show=False),
    ]

    def __init__(self, methods: list[str], clock=time.monotonic):
        super().__init__()
        self.methods = methods
        self.clock = clock
        self.current: str | None = None
        self.states = {m: MethodState() for m in methods}
        self.finished = False
        self.job = None

    def compose(self) -> ComposeResult:
        task = self.app.session.task
        yield Static(f"Running {len(self.methods)} methods on {shown(task.name)}", classes="title")
        for method in self.methods:
            with Horizontal(classes="method-row"):
                yield Label(method)
                # a total from the start: an empty bar, not the animated "unknown" pulse
                yield ProgressBar(total=1, id=f"bar-{_key(method)}", show_eta=False)
                yield Static("", id=f"status-{_key(method)}", classes="status")
        yield RichLog(id="log", markup=True, wrap=True)
        yield Static("c: cancel (finished methods are kept)", id="hint", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        for method in self.methods:
            self.show_status(method)
        session = self.app.session
        session.out_dir = session.out_root / session.task.folder_name
        session.analysis = None  # until this run's done event brings its own
        self.run_methods(
            {
                "task": str(session.task.path),
                "methods": self.methods,
                "out": str(session.out_dir),
                "limit": session.limit,
            }
        )

    def on_unmount(self) -> None:
        if self.job is not None and not self.finished:
            self.job.interrupt()

    @work(thread=True, exclusive=True, group="run")
    def run_methods(self, request: dict) -> None:
        self.job = self.app.backends.run(request)
        try:
            for event in self.job.events():
                self.app.call_from_thread(self.handle, event)
        finally:
            self.job.close()

    # Events from the child process, on the UI thread.
    def handle(self, event: dict) -> None:
        kind = event.get("event")
        typed = from_fields(event)
        if typed is not None:
            self.progress_event(typed)
        elif kind == "log":
            self.log_line(event["message"])
        elif kind == "start":
            self.method_started(event["label"].split(" · ")[-1], event["total"])
        elif kind == "advance":
            self.method_advanced(event["n"])
        elif kind == "done":
            self.app.session.analysis = event.get("analysis")
            self.done(None)
        elif kind == "cancelled":
            self.done("Cancelled: finished methods are kept.")
        elif kind == "error":
            self.done(f"[red]Error:[/] {shown(event['message'])}")

    def log_line(self, message: str) -> None:
        self.query_one("#log", RichLog).write(shown(message))

    def progress_event(self, event) -> None:
        """A typed event: its line in the log (as the terminal prints it), its fields here."""
        line = event.text()
        if line is not None:
            self.log_line(line)
        if isinstance(event, MethodStarted):
            self.method_preparing(event.method)
        elif isinstance(event, TrainingStep):
            self.training_step(event)
        elif isinstance(event, MethodFinished):
            self.method_ended(event.method, "done")
        elif isinstance(event, MethodFailed):
            self.method_ended(event.method, "failed", event.reason)

    def method_preparing(self, method: str) -> None:
        if method not in self.states:
            return
        self.current = method
        state = self.states[method]
        state.phase, state.started = "preparing", self.clock()
        self.show_status(method)

    def training_step(self, step: TrainingStep) -> None:
        method = step.method if step.method in self.states else self.current
        if method is None:
            return
        state = self.states[method]
        state.step, state.steps = step.step, step.steps
        if step.split == "train":
            state.train_loss = step.loss
        else:
            state.val_loss = step.loss
        self.bar(method).update(total=state.steps, progress=state.step)
        self.show_status(method)

    def method_started(self, method: str, total: int) -> None:
        if method not in self.states:
            return
        self.current = method
        state = self.states[method]
        if state.phase == "waiting":
            state.started = self.clock()
        state.phase, state.scoring_started = "scoring", self.clock()
        state.rows, state.done_rows = total, 0
        self.bar(method).update(total=total, progress=0)
        self.show_status(method)

    def method_advanced(self, n: int) -> None:
        if self.current:
            state = self.states[self.current]
            state.done_rows += n
            self.bar(self.current).advance(n)
            self.show_status(self.current)

    def method_ended(self, method: str, phase: str, failure: str = "") -> None:
        if method not in self.states:
            return
        state = self.states[method]
        state.phase, state.failure = phase, failure
        self.show_status(method)

    def show_status(self, method: str) -> None:
        self.query_one(f"#status-{_key(method)}", Static).update(self.status_text(method))

    def status_text(self, method: str) -> str:
        state = self.states[method]
        estimate = self.estimate(method)
        loss = _loss_text(state)
        if state.phase == "waiting":
            return f"waiting · est. {format_short(estimate['total'])}" if estimate else "waiting"
        if state.phase == "done":
            took = format_short(self.clock() - state.started)
            return f"[green]done[/] in {took}" + (f" · {loss}" if loss else "")
        if state.phase == "failed":
            return f"[red]{shown(state.failure)}[/]" + (f" · {loss}" if loss else "")
        now = self.clock()
        if state.phase == "preparing":
            if state.steps:
                elapsed = now - state.started
                left = elapsed / max(state.step, 1) * (state.steps - state.step)
                if estimate:
                    left += estimate["score"] or 0.0
                parts = [f"step {state.step}/{state.steps}", loss, f"ETA {format_short(left)}"]
                return " · ".join(p for p in parts if p)
            if estimate and estimate["total"] is not None:
                left = max(estimate["total"] - (now - state.started), 0.0)
                return f"preparing · ETA {format_short(left)} (est.)"
            return "preparing"
        elapsed = now - state.scoring_started
        text = f"scoring {state.done_rows}/{state.rows}"
        if state.done_rows:
            left = elapsed / state.done_rows * (state.rows - state.done_rows)
            text += f" · ETA {format_short(left)}"
        elif estimate and estimate["score"] is not None:
            text += f" · ETA {format_short(estimate['score'])} (est.)"
        return text + (f" · {loss}" if loss else "")

    def estimate(self, method: str) -> dict | None:
        plan = self.app.session.plan or {}
        step = next((s for s in plan.get("steps", []) if s["method"] == method), None)
        return step["estimate_s"] if step else None

    def bar(self, method: str) -> ProgressBar:
        return self.query_one(f"#bar-{_key(method)}", ProgressBar)

    def done(self, problem: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if problem:
            self.query_one("#log", RichLog).write(problem)
            self.query_one("#hint", Static).update("Enter: results so far · Esc: back")
            return
        self.query_one("#log", RichLog).write(f"Finished. Results in {self.app.session.out_dir}")
        self.action_results()

    def action_cancel(self) -> None:
        if self.finished:
            self.app.pop_screen()
            return
        if self.job is not None:
            self.job.interrupt()
        self.query_one("#log", RichLog).write("Cancelling after the current step...")

    def action_results(self) -> None:
        out = self.app.session.out_dir
        if self.finished and out is not None and (out / "results.json").is_file():
            self.app.show_results()


def _loss_text(state: MethodState) -> str:
    parts = []
    if state.train_loss is not None:
        parts.append(f"loss {state.train_loss:.3f}")
    if state.val_loss is not None:
        parts.append(f"val {state.val_loss:.3f}")
    return " ".join(parts)


def _key(method: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in method)
