"""Several processes of one run (torchrun, `accelerate launch`, `--devices N`): which process
this is, the process group they share, and the eval rows each one scores.

torchrun starts one process per device and tells each its place in RANK, LOCAL_RANK,
WORLD_SIZE and LOCAL_WORLD_SIZE. Every process runs the whole run: each prepares every method
(fine-tuning trains together, DDP or FSDP), scores every `WORLD_SIZE`-th eval row, and the
predictions are gathered in the original order on every process; only the first one (rank 0)
writes files and prints. With one process nothing here does anything.

Imports nothing heavy at module level; torch.distributed loads in the functions that need it.
"""

from __future__ import annotations

import os
from datetime import timedelta

# Processes wait for each other at every gather; one may be saving a large model meanwhile.
GROUP_TIMEOUT = timedelta(hours=2)


def world_size() -> int:
    """Processes in this run (1 outside a launcher)."""
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    return _env_int("RANK", 0)


def local_world_size() -> int:
    """Processes of this run on this machine (they share its RAM)."""
    return _env_int("LOCAL_WORLD_SIZE", world_size())


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or the only one)."""
    return rank() == 0


def launched() -> bool:
    """Whether a launcher (torchrun, accelerate launch) started this process."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def start_group() -> None:
    """Join the run's process group (once; nothing with one process): NCCL for CUDA tensors
    and gloo for the rest (the gathered predictions, and everything on a CPU), bound to this
    process's GPU."""
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=GROUP_TIMEOUT)


def shard(rows: list) -> list:
    """This process's share of `rows`: every world_size-th, from its rank."""
    return rows[rank() :: world_size()] if world_size() > 1 else rows


def gather(part: list, total: int) -> list:
    """The shares of every process (as `shard` dealt them) back in their original order, on
    every process."""
    if world_size() <= 1:
        return part
    import torch.distributed as dist

    start_group()
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, part)
    out: list = [None] * total
    for r, items in enumerate(parts):
        out[r :: world_size()] = items
    return out


def smallest(value: float | None) -> float | None:
    """The smallest of every process's `value` (None if any is None), the same on all of them,
    so that decisions made from it (the fit) agree."""
    if world_size() <= 1:
        return value
    import torch.distributed as dist

    start_group()
    values: list = [None] * world_size()
    dist.all_gather_object(values, value)
    return None if any(v is None for v in values) else min(values)


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        start_group()
        dist.barrier()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default
