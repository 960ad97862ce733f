"""How many threads torch's CPU kernels use: the machine's physical cores.

torch's default is the logical CPU count. On a machine with hyper-threads that runs two threads
on one core's arithmetic units, and when other work shares the cores, threads waiting at a
barrier spin: 16 decode steps took 66-77 s with 2 threads on the busy 2-core machine and 15-19 s
with 1. adaptwise therefore uses one thread per physical core (read from /sys), unless the user
chose: `ADAPTWISE_THREADS=N`, or OMP_NUM_THREADS / MKL_NUM_THREADS, which torch already obeys.
Benchmarks print the count they ran with.
"""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Distinct (package, core) pairs among the online CPUs; the logical count if unknown."""
    cores = set()
    for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
        try:
            package = (cpu / "topology" / "physical_package_id").read_text().strip()
            core = (cpu / "topology" / "core_id").read_text().strip()
        except OSError:
            continue
        cores.add((package, core))
    return len(cores) or os.cpu_count() or 1


def thread_count() -> int:
    """The intra-op thread count runs use (module docstring)."""
    chosen = os.environ.get("ADAPTWISE_THREADS")
    if chosen and chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name)
        if value and value.isdigit() and int(value) > 0:
            return int(value)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return max(1, min(physical_cores(), usable or physical_cores()))


def apply_thread_policy() -> int:
    """Set torch's intra-op threads to `thread_count()`; returns it."""
    import torch

    n = thread_count()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
