"""Shared set-up for the benchmarks: the demo tasks and the embedded model, loaded once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.startup import start_process  # noqa: E402

start_process()  # before the imports below pull in transformers

from experiments.context import RunContext, RunOptions  # noqa: E402
from experiments.task import load_task  # noqa: E402


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


def cpu_and_wall(fn):
    """(CPU seconds of this process, wall seconds, result) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def alternating_rounds(sides: dict, rounds: int, report=None) -> dict[str, list[tuple]]:
    """Run every side once a round, the order reversed every other round, so that drift in the
    machine's speed falls on all of them. Each side is a function returning (cpu_s, wall_s,
    result); `report(round, {side: (cpu_s, wall_s, result)})` is called after each round."""
    runs: dict[str, list[tuple]] = {name: [] for name in sides}
    for round_ in range(rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for name in order:
            runs[name].append(sides[name]())
        if report:
            report(round_, {name: runs[name][-1] for name in sides})
    return runs


def print_ratios(label: str, runs: dict[str, list[tuple]], peer: str, ours: str) -> None:
    """Per-round and median ratios peer/ours of CPU seconds and wall time (above 1: ours is
    cheaper)."""
    import statistics

    cpu = [p[0] / o[0] for p, o in zip(runs[peer], runs[ours], strict=True)]
    wall = [p[1] / o[1] for p, o in zip(runs[peer], runs[ours], strict=True)]
    print(
        f"{label}: {peer} / {ours} = median {statistics.median(cpu):.2f}x CPU, "
        f"{statistics.median(wall):.2f}x wall (rounds: "
        + ", ".join(f"{c:.2f}x/{w:.2f}x" for c, w in zip(cpu, wall))
        + "; CPU/wall)"
    )


def pin_threads() -> int:
    """The thread policy runs use (one per physical core), applied and printed."""
    import torch

    from experiments.threads import apply_thread_policy

    n = apply_thread_policy()
    print(f"torch intra-op threads: {torch.get_num_threads()} (the same for every side)")
    return n


def method_prompts(ctx, rows, name: str, selector: str | None, k: int) -> list:
    """The prompts the prompting method `name` builds for `rows` (its pool prepared first)."""
    from experiments.prompting import PromptingMethod

    method = PromptingMethod(name, selector, k)
    method.prepare(ctx)
    return [
        ctx.prompt_format.build(ex, r.messages)
        for ex, r in zip(method.examples_for(ctx, rows), rows)
    ]
