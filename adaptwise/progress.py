"""Progress bars for long steps, drawn with rich (the core only calls the RunProgress protocol)."""

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


class RichProgress:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def start(self, label: str, total: int) -> None:
        self._task = self.bars.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self.bars.advance(self._task, n)

    def finish(self) -> None:
        self._task = None

    def log(self, message: str) -> None:
        self.bars.console.print(message)
