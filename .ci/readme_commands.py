"""Run the README's two commands exactly as written (CI is a new user).

The commands are read from the first ```bash block under "## Two commands" in README.md, so CI
follows the README when it changes. The first opens the terminal UI: it runs in a pseudo-terminal
until the UI has drawn its first screen, which must show the demo task, then presses Ctrl+Q and
expects a clean exit. The second (install with the test tools, then the tests) runs as it is.

Usage: python3 .ci/readme_commands.py 1|2
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUI_DRAWN = "support-intents"  # the demo task's name, on the TUI's first screen
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    if len(commands) != 2:
        raise SystemExit(f"readme_commands: expected two commands, found {commands}")
    return commands


def run_tui_command(command: str, timeout_s: float = 1200) -> int:
    """Run `command` in a pseudo-terminal; quit the UI once it shows the demo task."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.environ["COLUMNS"], os.environ["LINES"] = "120", "40"
        os.execvp("bash", ["bash", "-c", command])
    seen, drawn_at, deadline = "", None, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:  # the child closed the terminal: it has exited
                break
            seen += chunk
            plain = ANSI.sub("", seen[-200000:])
            if drawn_at is None and TUI_DRAWN in plain and "\x1b[?1049h" in seen:
                drawn_at = time.monotonic()
        if drawn_at is not None and time.monotonic() - drawn_at > 3:
            os.write(fd, b"\x11")  # Ctrl+Q: the TUI's quit key
            drawn_at = float("inf")
    else:
        os.kill(pid, 9)
        print(ANSI.sub("", seen)[-3000:])
        print(f"readme_commands: the TUI did not open and quit within {timeout_s:.0f} s")
        return 1
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    plain = ANSI.sub("", seen)
    if drawn_at != float("inf"):
        print(plain[-3000:])
        print("readme_commands: the first command ended before the TUI showed the demo task")
        return code or 1
    print(f"readme_commands: the TUI opened on the demo task and quit with status {code}")
    return code


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    commands = readme_commands()
    if which == "1":
        print(f"$ {commands[0]}", flush=True)
        return run_tui_command(commands[0])
    if which == "2":
        print(f"$ {commands[1]}", flush=True)
        return subprocess.run(["bash", "-c", commands[1]], cwd=ROOT, check=False).returncode
    raise SystemExit("usage: python3 .ci/readme_commands.py 1|2")


if __name__ == "__main__":
    sys.exit(main())
