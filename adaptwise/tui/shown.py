"""Text from outside adaptwise (task names, model answers, a server's or the runner's messages)
for the TUI's widgets, which read Rich markup in the strings they are given: control characters
removed (experiments/plain_text.py) and markup escaped, so `[/bold]` in a name is shown as it is
instead of breaking the screen."""

from __future__ import annotations

from rich.markup import escape

from experiments.plain_text import plain


def shown(text: object) -> str:
    return escape(plain(text))
