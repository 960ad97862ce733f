"""Start an `adaptwise.tui.jobs` child process and read its events (no UI imports: the TUI's
screens read these in worker threads, where a blocking read releases the GIL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ChildJob:
    """One child process running one job; `events()` yields its events as dicts."""

    def __init__(self, request: dict):
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adaptwise.tui.jobs"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            encoding="utf-8",
            bufsize=1,
            start_new_session=True,  # its own process group: the terminal's keys never reach it
            env=env,
        )
        self.send(request)

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it exited; events() reports why

    def events(self) -> Iterator[dict]:
        """Events until the child exits; a crash without an error event becomes one."""
        ended = False
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            ended = ended or event.get("event") in ("done", "error", "cancelled", "plan", "shipped")
            yield event
        code = self.proc.wait()
        if not ended and code != 0:
            yield {"event": "error", "message": self._last_error(code)}

    def next_event(self) -> dict:
        """The next event (chat: the answer to the last request)."""
        line = self.proc.stdout.readline()
        if not line:
            return {"event": "error", "message": self._last_error(self.proc.wait())}
        return json.loads(line)

    def interrupt(self) -> None:
        """Ask the job to stop (SIGINT: KeyboardInterrupt in the child)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)

    def close(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.interrupt()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def _last_error(self, code: int) -> str:
        self.log.flush()
        self.log.seek(0)
        lines = [line.strip() for line in self.log.read().splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        return f"the worker process stopped (exit status {code}): {last[:200]}"


class Backends:
    """Where the TUI's screens send work; tests pass fakes with the same methods."""

    def plan(self, request: dict) -> ChildJob:
        return ChildJob({"job": "plan", **request})

    def run(self, request: dict) -> ChildJob:
        return ChildJob({"job": "run", **request})

    def ship(self, request: dict) -> ChildJob:
        return ChildJob({"job": "ship", **request})

    def chat(self) -> ChildJob:
        return ChildJob({"job": "chat"})
