"""The adaptwise TUI: task -> questionnaire -> recommendation -> run -> results (-> chat).

The app owns the transitions: a screen asks for the next one (`self.app.show_run(...)`) and never
imports another screen, so the screens import nothing of each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from adaptwise.tui.jobclient import Backends
from advisor.questions import Answers
from advisor.recommend import Recommendation
from experiments.task import DEMO_DIR


@dataclass
class Session:
    """What the screens share: the chosen task, the answers, the advice and the run."""

    limit: int | None = 8
    out_root: Path = Path("runs")
    task: object | None = None  # experiments.task.Task
    answers: Answers = field(default_factory=Answers)
    recommendation: Recommendation | None = None
    plan: dict | None = None  # adaptwise.planning.plan.Plan.to_dict() for the current answers
    out_dir: Path | None = None
    # The run's own analysis of out_dir (its best method and p-values), from the run job's
    # done event; None: the results screen analyses the files itself.
    analysis: dict | None = None

    def demo_tasks(self) -> list[Path]:
        return sorted(DEMO_DIR.glob("*/task.yaml"))


class AdaptwiseApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "adaptwise"
    SUB_TITLE = "decide how to adapt an LLM, then prove it"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(
        self,
        task_path: Path | None = None,
        limit: int | None = 8,
        out_root: Path = Path("runs"),
        backends: Backends | None = None,
    ):
        super().__init__()
        self.session = Session(limit=limit, out_root=out_root)
        self.initial_task = task_path
        self.backends = backends or Backends()

    def on_mount(self) -> None:
        from adaptwise.tui.screens.task import TaskScreen

        self.push_screen(TaskScreen(self.initial_task))

    def show_questionnaire(self) -> None:
        from adaptwise.tui.screens.questionnaire import QuestionnaireScreen

        self.push_screen(QuestionnaireScreen())

    def show_recommendation(self) -> None:
        from adaptwise.tui.screens.recommendation import RecommendationScreen

        self.push_screen(RecommendationScreen())

    def show_run(self, methods: list[str]) -> None:
        from adaptwise.tui.screens.run import RunScreen

        self.push_screen(RunScreen(methods))

    def show_results(self) -> None:
        from adaptwise.tui.screens.results import ResultsScreen

        self.push_screen(ResultsScreen())

    def show_chat(self, methods: list[str], chosen: str | None) -> None:
        from adaptwise.tui.screens.chat import ChatScreen

        self.push_screen(ChatScreen(methods, chosen))

    def back_to_recommendation(self) -> None:
        """From the results back to the advice (over the finished run's screen)."""
        from adaptwise.tui.screens.recommendation import RecommendationScreen

        while not isinstance(self.screen, RecommendationScreen):
            self.pop_screen()
