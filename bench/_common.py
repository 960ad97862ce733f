"""Shared set-up for the benchmarks: the demo tasks and the embedded model, loaded once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.context import RunContext, RunOptions  # noqa: E402
from experiments.quiet import quiet_libraries  # noqa: E402
from experiments.task import load_task  # noqa: E402

quiet_libraries()


def demo_context(task: str, **options) -> RunContext:
    ctx = RunContext(load_task(ROOT / "demo" / task / "task.yaml"), RunOptions(**options))
    ctx.lm  # noqa: B018 - load before timing
    return ctx


def timed(fn, repeat: int = 1):
    """Best wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
