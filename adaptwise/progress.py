"""Progress bars for long steps, drawn with rich (the core only calls the RunProgress protocol);
its typed events (experiments/progress_events.py) print as the lines they stand for.

The core's messages are plain text that may quote a server, a model or the user's files, so
`log` shows them as they are: no Rich markup is read in them and no control character reaches
the terminal (experiments/plain_text.py). The CLI's own styled lines are `rich.text.Text`."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RichProgress:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}", markup=False),  # a task's name, as it is
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = None
        from experiments.distributed import is_main

        self.main = is_main()  # of several processes, the first speaks for all

    def __enter__(self) -> RichProgress:
        if self.main:
            self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def start(self, label: str, total: int) -> None:
        from experiments.plain_text import plain

        self._task = self.bars.add_task(plain(label, one_line=True), total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self.bars.advance(self._task, n)

    def finish(self) -> None:
        self._task = None

    def event(self, event) -> None:
        """A typed progress event (experiments/progress_events.py), printed as its line."""
        line = event.text()
        if line is not None:
            self.log(line)

    def log(self, message: str | Text) -> None:
        if not self.main:
            return
        from experiments.plain_text import plain

        if not isinstance(message, Text):
            message = Text(plain(message))
        self.bars.console.print(message, highlight=False)
