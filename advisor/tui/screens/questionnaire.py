"""Meta's decision questions, one at a time, keyboard-first: Enter answers and moves on."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from advisor.questions import QUESTIONS


class QuestionnaireScreen(Screen):
    BINDINGS = [
        Binding("left,backspace", "back", "Back"),
        Binding("escape", "leave", "Change task"),
    ]

    def __init__(self, start: int = 0):
        super().__init__()
        self.index = start

    def compose(self) -> ComposeResult:
        yield Static("", id="progress", classes="hint")
        yield Static("", id="question", classes="title")
        yield Static("", id="why", classes="why")
        yield OptionList(id="choices")
        yield Static("Enter: answer and go on · Left: back · Esc: change task", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        question = QUESTIONS[self.index]
        task = self.app.session.task
        self.query_one("#progress", Static).update(
            f"{task.name} · question {self.index + 1} of {len(QUESTIONS)}"
        )
        self.query_one("#question", Static).update(question.text)
        self.query_one("#why", Static).update(f"Why it matters: {question.why}")
        choices = self.query_one("#choices", OptionList)
        choices.clear_options()
        choices.add_options([Option(label, id=value) for value, label in question.choices])
        current = getattr(self.app.session.answers, question.id)
        values = [v for v, _ in question.choices]
        choices.highlighted = values.index(current) if current in values else 0
        choices.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        session = self.app.session
        question = QUESTIONS[self.index]
        session.answers = replace(session.answers, **{question.id: event.option.id})
        if self.index + 1 < len(QUESTIONS):
            self.index += 1
            self.show()
        else:
            self.app.show_recommendation()

    def action_back(self) -> None:
        if self.index > 0:
            self.index -= 1
            self.show()
        else:
            self.action_leave()

    def action_leave(self) -> None:
        self.app.pop_screen()
