"""The recommendation: the ladder with its reasons, what is ruled out, warnings; run it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from advisor.recommend import recommend
from experiments.errors import AdaptwiseError


def runnable(method: str) -> bool:
    """Whether the runner knows the method (RAG and fine-tuning land as their packages do)."""
    from experiments.methods import make_method

    try:
        make_method(method, {})
    except AdaptwiseError:
        return False
    return True


class RecommendationScreen(Screen):
    BINDINGS = [
        Binding("r", "run", "Run the ladder"),
        Binding("e,left", "edit", "Edit answers"),
        Binding("s", "save", "Save answers"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("", id="heading", classes="title")
        with VerticalScroll(id="body"):
            yield Static("", id="ladder")
            yield Static("", id="ruled")
            yield Static("", id="warnings")
        yield Static("", id="saved", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_advice()

    def on_screen_resume(self) -> None:
        self.refresh_advice()

    def refresh_advice(self) -> None:
        session = self.app.session
        rec = recommend(session.answers)
        session.recommendation = rec
        self.runnable = [m for m in rec.methods if runnable(m)]
        hardware = (
            f"GPU {session.answers.gpu_memory_gb:g} GB"
            if session.answers.gpu_memory_gb
            else "CPU only"
        )
        self.query_one("#heading", Static).update(
            f"Recommendation for {session.task.name} · {session.answers.model} · {hardware}"
        )
        lines = ["[b]Try, in this order[/b]"]
        for i, rung in enumerate(rec.ladder, 1):
            tag = "" if rung.method in self.runnable else "  [dim](not available in this build)[/]"
            lines.append(f" {i}. [b green]{rung.method}[/]{tag}")
            lines += [f"      - {reason}" for reason in rung.reasons]
        self.query_one("#ladder", Static).update("\n".join(lines))
        ruled = ["", "[b]Ruled out[/b]"]
        ruled += [f" [red]{r.method}[/]: {'; '.join(r.reasons)}" for r in rec.ruled_out]
        self.query_one("#ruled", Static).update("\n".join(ruled))
        warn = ["", "[b]Watch out[/b]"] + [f" ! {w}" for w in rec.warnings] if rec.warnings else []
        self.query_one("#warnings", Static).update("\n".join(warn))
        limit = session.limit
        rows = f"the first {limit} eval rows" if limit else "every eval row"
        self.query_one("#saved", Static).update(
            f"r: run {', '.join(self.runnable)} on {rows} · e: edit answers · s: save answers"
        )

    def action_run(self) -> None:
        from advisor.tui.screens.run import RunScreen

        self.app.push_screen(RunScreen(self.runnable))

    def action_edit(self) -> None:
        self.app.pop_screen()

    def action_save(self) -> None:
        from advisor.questions import dump_answers
        from experiments.atomic import write_text_atomic

        session = self.app.session
        path = session.out_root / session.task.name / "answers.yaml"
        write_text_atomic(path, dump_answers(session.answers))
        self.query_one("#saved", Static).update(
            f"Saved {path}: `adaptwise advise --answers {path}` gives the same advice."
        )
