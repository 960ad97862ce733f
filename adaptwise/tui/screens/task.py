"""Choose a task: a shipped demo task or the path of the user's own task.yaml."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from experiments.errors import AdaptwiseError


class TaskScreen(Screen):
    BINDINGS = [Binding("tab", "app.focus_next", "Switch list / path", show=True)]

    def __init__(self, initial: Path | None = None):
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        yield Static("Which task do you want to adapt a model for?", classes="title")
        options = []
        for path in self.app.session.demo_tasks():
            options.append(Option(f"demo: {path.parent.name}", id=str(path)))
        yield OptionList(*options, id="tasks")
        yield Input(placeholder="...or type the path of your task.yaml and press Enter", id="path")
        yield Static("", id="error", classes="error")
        yield Static("Up/down and Enter to choose; Tab to type a path.", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        if self.initial:
            self.choose(Path(self.initial))
        else:
            self.query_one("#tasks", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.choose(Path(event.option.id))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.choose(Path(event.value.strip()).expanduser())

    def choose(self, path: Path) -> None:
        from advisor.verdict import answers_from_task
        from experiments.task import load_task

        if path.is_dir():
            path = path / "task.yaml"
        try:
            task = load_task(path)
        except AdaptwiseError as exc:
            self.query_one("#error", Static).update(str(exc))
            return
        session = self.app.session
        session.task = task
        session.answers = answers_from_task(task, session.answers)
        self.query_one("#error", Static).update("")
        self.app.show_questionnaire()
