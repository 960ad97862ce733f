"""Wall time of `adaptwise --help` vs importing the heavy stack it avoids (torch + transformers).

Run: python bench/bench_cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    help_s = wall([py, "-m", "adaptwise", "--help"], args.repeat)
    bare_s = wall([py, "-c", "pass"], args.repeat)
    heavy_s = wall([py, "-c", "import torch, transformers.modeling_utils"], args.repeat)
    print(f"median of {args.repeat} runs")
    print(f"{'command':<44}{'seconds':>9}")
    print(f"{'python -c pass':<44}{bare_s:>9.3f}")
    print(f"{'adaptwise --help':<44}{help_s:>9.3f}")
    heavy_label = 'python -c "import torch, transformers"'
    print(f"{heavy_label:<44}{heavy_s:>9.3f}")
    verdict = "meets" if help_s < 0.5 else "MISSES"
    print(f"--help is {heavy_s / help_s:.1f}x faster than the heavy imports; {verdict} < 0.5 s")


if __name__ == "__main__":
    main()
