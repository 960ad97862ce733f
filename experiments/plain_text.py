"""Text that comes from outside adaptwise (a server's error message or answer, a task, label or
method name, a model's completion) shown as plain text: terminal control sequences and other
control characters are removed before it reaches a terminal or report.md, so an answer cannot
clear the screen, retitle the window or hide a line (`ESC[2J`, `ESC]0;...`, a bidi override).

The CLI also escapes Rich markup in such text (adaptwise/); this module is the one place that
decides which characters are not shown.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and any other two-character ESC sequence.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
# C0 and C1 controls and DEL, but tab and newline; the bidi embeddings, overrides and isolates.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(text: object, one_line: bool = False) -> str:
    """`text` without terminal escape sequences and control characters (tabs and newlines are
    kept, or with `one_line` become spaces)."""
    out = _CONTROLS.sub("", _ESCAPES.sub("", str(text)))
    return " ".join(out.split()) if one_line else out
