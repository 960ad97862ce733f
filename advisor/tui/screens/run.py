"""The run: each method's progress, in a worker thread so the UI stays responsive."""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from experiments.errors import AdaptwiseError


class RunCancelled(Exception):
    """Raised inside the runner's progress callback when the user cancels."""


class ScreenProgress:
    """The runner's progress protocol, forwarded to the screen on the UI thread."""

    def __init__(self, screen: RunScreen):
        self.screen = screen
        self.cancelled = threading.Event()

    def _call(self, fn, *args) -> None:
        self.screen.app.call_from_thread(fn, *args)

    def start(self, label: str, total: int) -> None:
        self._check()
        self._call(self.screen.method_started, label.split(" · ")[-1], total)

    def advance(self, n: int) -> None:
        self._check()
        self._call(self.screen.method_advanced, n)

    def finish(self) -> None:
        self._call(self.screen.method_finished)

    def log(self, message: str) -> None:
        self._call(self.screen.log_line, message)

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelled


class RunScreen(Screen):
    BINDINGS = [
        Binding("c,escape", "cancel", "Cancel"),
        Binding("enter", "results", "Results", show=False),
    ]

    def __init__(self, methods: list[str]):
        super().__init__()
        self.methods = methods
        self.current: str | None = None
        self.progress = ScreenProgress(self)
        self.finished = False

    def compose(self) -> ComposeResult:
        task = self.app.session.task
        yield Static(f"Running {len(self.methods)} methods on {task.name}", classes="title")
        for method in self.methods:
            with Horizontal(classes="method-row"):
                yield Label(method)
                yield ProgressBar(id=f"bar-{_key(method)}", show_eta=True)
                yield Static("waiting", id=f"status-{_key(method)}", classes="status")
        yield RichLog(id="log", markup=True)
        yield Static("c: cancel (finished methods are kept)", id="hint", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.run_methods()

    @work(thread=True, exclusive=True)
    def run_methods(self) -> None:
        from experiments.context import RunOptions
        from experiments.runner import run_task

        session = self.app.session
        out = session.out_root / session.task.name
        session.out_dir = out
        try:
            run_task(
                session.task,
                self.methods,
                out,
                RunOptions(limit=session.limit),
                progress=self.progress,
            )
        except RunCancelled:
            self.app.call_from_thread(self.done, "Cancelled: finished methods are kept.")
            return
        except AdaptwiseError as exc:
            self.app.call_from_thread(self.done, f"[red]Error:[/] {exc}")
            return
        self.app.call_from_thread(self.done, None)

    def method_started(self, method: str, total: int) -> None:
        self.current = method
        self.query_one(f"#bar-{_key(method)}", ProgressBar).update(total=total, progress=0)
        self.query_one(f"#status-{_key(method)}", Static).update("running")

    def method_advanced(self, n: int) -> None:
        if self.current:
            self.query_one(f"#bar-{_key(self.current)}", ProgressBar).advance(n)

    def method_finished(self) -> None:
        if self.current:
            self.query_one(f"#status-{_key(self.current)}", Static).update("[green]done[/]")

    def log_line(self, message: str) -> None:
        self.query_one("#log", RichLog).write(message)

    def done(self, problem: str | None) -> None:
        self.finished = True
        if problem:
            self.log_line(problem)
            self.query_one("#hint", Static).update("Enter: results so far · Esc: back")
            return
        self.log_line(f"Finished. Results in {self.app.session.out_dir}")
        self.action_results()

    def action_cancel(self) -> None:
        if self.finished:
            self.app.pop_screen()
            return
        self.progress.cancelled.set()
        self.log_line("Cancelling after the current step...")

    def action_results(self) -> None:
        from advisor.tui.screens.results import ResultsScreen

        if self.finished:
            self.app.push_screen(ResultsScreen())


def _key(method: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in method)
