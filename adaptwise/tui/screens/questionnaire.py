"""Meta's decision questions, one at a time, keyboard-first: Enter answers and moves on; then
the number questions (queries per day), typed, where an empty answer skips."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from adaptwise.tui.shown import shown
from advisor.hosting_costs import parse_queries_per_day
from advisor.questions import NUMBER_QUESTIONS, QUESTIONS
from experiments.errors import AdaptwiseError

TOTAL = len(QUESTIONS) + len(NUMBER_QUESTIONS)
CHOICE_HINT = "Enter: answer and go on · Left: back · Esc: change task"
NUMBER_HINT = "Enter: answer (empty: skip) and go on · Up: back · Esc: change task"


class QuestionnaireScreen(Screen):
    BINDINGS = [
        Binding("left,backspace", "back", "Back"),
        Binding("escape", "leave", "Change task"),
        Binding("up", "number_back", "Back", show=False),  # in a typed answer, left edits it
    ]

    def __init__(self, start: int = 0):
        super().__init__()
        self.index = start

    def compose(self) -> ComposeResult:
        yield Static("", id="progress", classes="hint")
        yield Static("", id="question", classes="title")
        yield Static("", id="why", classes="why")
        yield OptionList(id="choices")
        number = Input(id="number")
        number.display = False
        yield number
        error = Static("", id="number-error", classes="error")
        error.display = False
        yield error
        yield Static(CHOICE_HINT, id="keys", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        task = self.app.session.task
        self.query_one("#progress", Static).update(
            f"{shown(task.name)} · question {self.index + 1} of {TOTAL}"
        )
        numbered = self.index >= len(QUESTIONS)
        question = (
            NUMBER_QUESTIONS[self.index - len(QUESTIONS)] if numbered else QUESTIONS[self.index]
        )
        self.query_one("#question", Static).update(question.text)
        self.query_one("#why", Static).update(f"Why it matters: {question.why}")
        choices = self.query_one("#choices", OptionList)
        number = self.query_one("#number", Input)
        choices.display = not numbered
        number.display = numbered
        self.query_one("#number-error", Static).display = False
        self.query_one("#keys", Static).update(NUMBER_HINT if numbered else CHOICE_HINT)
        if numbered:
            current = getattr(self.app.session.answers, question.id)
            number.placeholder = question.placeholder
            number.value = "" if current is None else f"{current:g}"
            number.focus()
            return
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
        self.next()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        question = NUMBER_QUESTIONS[self.index - len(QUESTIONS)]
        text = event.value.strip()
        try:
            value = parse_queries_per_day(text, "Queries per day") if text else None
        except AdaptwiseError as exc:
            error = self.query_one("#number-error", Static)
            error.update(str(exc))
            error.display = True
            return
        self.app.session.answers = replace(self.app.session.answers, **{question.id: value})
        self.next()

    def next(self) -> None:
        if self.index + 1 < TOTAL:
            self.index += 1
            self.show()
        else:
            self.app.show_recommendation()

    def action_number_back(self) -> None:
        if self.index >= len(QUESTIONS):
            self.action_back()

    def action_back(self) -> None:
        if self.index > 0:
            self.index -= 1
            self.show()
        else:
            self.action_leave()

    def action_leave(self) -> None:
        self.app.pop_screen()
