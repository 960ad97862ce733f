"""Benchmark: how long `adaptwise plan`'s timing probe takes on the embedded model.

The probe (adaptwise/planning/timing_probe.py) runs once per model and machine and is then cached;
docs/planning.md quotes its duration. Each repeat measures a fresh probe (an empty probe cache) in a
fresh process, imports included, on the demo classification task.
Run with `python bench/bench_plan_probe.py [--repeats N]` (about 20 s a repeat on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child() -> dict:
    from adaptwise.planning.planner import make_plan
    from advisor.machine import this_machine
    from experiments.task import load_task

    task = load_task(ROOT / "demo" / "support-intents" / "task.yaml")
    plan = make_plan(task, limit=4, machine=this_machine(None), log=lambda _m: None)
    return {"probe_s": plan.rates.probe_s, "cached": plan.probe_cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from experiments.models import cache_dir, resolve_checkpoint

    resolve_checkpoint(None, progress=lambda _m: None)  # the conversion is not part of it
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            # A fresh probe cache, and the already converted model linked in.
            (Path(cache) / "models").symlink_to(cache_dir() / "models")
            env = {**os.environ, "ADAPTWISE_CACHE": cache}
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--child"],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            wall = time.perf_counter() - started
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"probe {row['probe_s']:.1f} s, whole process {wall:.1f} s (cached: {row['cached']})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(child()))
    else:
        main()
