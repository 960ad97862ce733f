"""TUI responsiveness: time to the first screen, and UI-loop lag while a run works.

Key presses are handled on the UI's event loop, so the loop's lag (how late a 10 ms timer
fires) while a run goes bounds how long a key press waits. The runner works in a child process
(adaptwise/tui/jobs.py) and a worker thread here only waits for its events, so importing torch and
running the model never hold the UI process's GIL.
Run: python bench/bench_tui.py [--rows 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_SCREEN = """
import time; t0 = time.perf_counter()
import asyncio
from adaptwise.tui.app import AdaptwiseApp
from adaptwise.tui.screens.task import TaskScreen
async def main():
    app = AdaptwiseApp()
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, TaskScreen):
            await pilot.pause(0.005)
        print(time.perf_counter() - t0)
asyncio.run(main())
"""


def first_screen_seconds(repeat: int) -> tuple[float, float]:
    total, inner = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", FIRST_SCREEN],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        total.append(time.perf_counter() - start)
        inner.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(total), statistics.median(inner)


async def loop_lag_during_run(rows: int) -> tuple[list[float], float]:
    import tempfile

    from adaptwise.tui.app import AdaptwiseApp
    from adaptwise.tui.screens.results import ResultsScreen
    from adaptwise.tui.screens.run import RunScreen
    from advisor.questions import Answers
    from advisor.recommend import recommend
    from experiments.task import load_task

    app = AdaptwiseApp(limit=rows, out_root=Path(tempfile.mkdtemp()))
    lags: list[float] = []
    async with app.run_test(size=(120, 40)):
        session = app.session
        session.task = load_task(ROOT / "demo/support-intents/task.yaml")
        session.recommendation = recommend(Answers())
        start = time.perf_counter()
        await app.push_screen(RunScreen(["zero-shot", "few-shot-jaccard"]))
        while not isinstance(app.screen, ResultsScreen):
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)
        run_s = time.perf_counter() - start
    return lags, run_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    total, inner = first_screen_seconds(args.repeat)
    print(
        f"first screen drawn: {inner:.2f} s after the interpreter started importing "
        f"({total:.2f} s including interpreter start and exit); target < 1 s"
    )
    lags, run_s = asyncio.run(loop_lag_during_run(args.rows))
    lags_ms = sorted(x * 1000 for x in lags)
    p50 = lags_ms[len(lags_ms) // 2]
    p99 = lags_ms[int(len(lags_ms) * 0.99)]
    print(
        f"during a {run_s:.0f} s run (zero-shot + few-shot-jaccard, {args.rows} rows): UI loop "
        f"lag p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags_ms[-1]:.1f} ms over "
        f"{len(lags_ms)} samples; target: a key press answered within 100 ms"
    )


if __name__ == "__main__":
    main()
