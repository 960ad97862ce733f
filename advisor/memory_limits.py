"""The host memory this process may really use, and which limit binds it.

A machine's RAM is rarely what a process gets. Read here, without torch, from the kernel:

- `MemAvailable` in /proc/meminfo: what the whole machine can still hand out;
- the memory cgroup's limit (v2 `memory.max`, v1 `hierarchical_memory_limit`, the tightest over
  the cgroup's ancestors): a container's, a systemd unit's or a job scheduler's `--mem`. Its use
  is the working set, as `docker stats` and the kubelet count it: usage less the inactive file
  cache, which the kernel reclaims before it kills anything;
- `ulimit -v` (RLIMIT_AS) less what the process has mapped (VmSize), and `ulimit -d`
  (RLIMIT_DATA) less its data segment (VmData). These limits count address space, not memory
  in use: glibc's per-thread arenas, thread stacks and a checkpoint's memory map are reserved
  but mostly not resident. The room they leave is divided by VIRTUAL_PER_RESIDENT before it is
  held against the estimator's (resident) figures.

Each becomes "what this process may use in all": the room left under the limit plus what the
caller says it holds of what the estimate counts (the shared model's weights, which a method's
estimate includes, so they count in its budget too; not the interpreter's own memory, which
no estimate counts and nothing frees). The smallest wins and names itself.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

GB = 1e9
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED_CGROUP = 1 << 60  # v1 writes "no limit" as a huge page-aligned number
# Address space a training process maps per byte of the estimator's (resident) figures, with
# the allocator settings adaptwise uses under such a limit (experiments/allocator.py). Measured
# here (2 cores, glibc 2.36) on full fine-tuning of SmolLM2-135M: VmPeak/VmHWM is 1.50 with
# AdamW and 1.64 with 8-bit Adam and checkpointing, whose small resident peak leaves the fixed
# mappings (thread stacks, arenas, libraries loaded late) a larger share. 2.1 is the value at
# which the fit was right under every `ulimit -v` tried (3.6, 4.3, 4.6, 5.0, 6.0 and 8.0 GB):
# the settings it chose trained, or it recorded the method as out of memory before loading.
VIRTUAL_PER_RESIDENT = 2.1


@dataclass(frozen=True)
class MemoryBound:
    gb: float  # what this process may use in all, counting what it holds already
    source: str  # which limit this is, in words a user can look up

    def describe(self) -> str:
        return f"{self.gb:.1f} GB ({self.source})"


def ram_bounds(
    held_bytes: float = 0.0, proc: Path = Path("/proc"), cgroup_root: Path = CGROUP_ROOT
) -> list[MemoryBound]:
    """Every limit that applies to this process, each as the GB it leaves this process, with
    `held_bytes` (memory it holds that the estimate counts) added back."""
    status = _status(proc / "self/status")
    held = held_bytes
    bounds = []
    available = _meminfo(proc / "meminfo").get("MemAvailable")
    if available is not None:
        bounds.append(MemoryBound((available + held) / GB, "MemAvailable"))
    cgroup = _cgroup_room(proc / "self/cgroup", cgroup_root)
    if cgroup is not None:
        room, source = cgroup
        bounds.append(MemoryBound((room + held) / GB, source))
    for limit, used, source in (
        (resource.RLIMIT_AS, status.get("VmSize"), "ulimit -v (RLIMIT_AS)"),
        (resource.RLIMIT_DATA, status.get("VmData"), "ulimit -d (RLIMIT_DATA)"),
    ):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and used is not None:
            room = max(soft - used, 0) / VIRTUAL_PER_RESIDENT
            bounds.append(MemoryBound((room + held) / GB, source))
    return bounds


def tightest_ram_bound(held_bytes: float = 0.0, **paths) -> MemoryBound | None:
    """The smallest of `ram_bounds`, or None where none can be read."""
    bounds = ram_bounds(held_bytes, **paths)
    return min(bounds, key=lambda b: b.gb) if bounds else None


def _status(path: Path) -> dict[str, int]:
    """/proc/self/status sizes in bytes (VmSize, VmData, RssAnon, ...)."""
    out = {}
    try:
        for line in path.read_text(encoding="ascii", errors="replace").splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                out[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _meminfo(path: Path) -> dict[str, int]:
    return _status(path)  # the same "Name:  123 kB" lines


def _cgroup_room(self_cgroup: Path, root: Path) -> tuple[int, str] | None:
    """(bytes left under the tightest memory cgroup limit, its name), or None without one."""
    try:
        lines = self_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.lstrip("/")
        if controllers == "":  # v2: the unified hierarchy
            for mount in (root, root / "unified"):
                room = _v2_room(mount, relative)
                if room is not None:
                    rooms.append((room, "cgroup v2 memory.max"))
                    break
        elif "memory" in controllers.split(","):
            room = _v1_room(root / "memory", relative)
            if room is not None:
                rooms.append((room, "cgroup v1 memory limit"))
    return min(rooms) if rooms else None


def _v2_room(mount: Path, relative: str) -> int | None:
    """The least room over the cgroup and its ancestors (a parent's limit binds its children)."""
    folder = mount / relative
    if not (folder / "cgroup.controllers").exists():
        return None
    best = None
    while True:
        limit = _read_int(folder / "memory.max")
        if limit is not None:
            current = _read_int(folder / "memory.current") or 0
            inactive = _stat(folder / "memory.stat").get("inactive_file", 0)
            room = max(limit - (current - inactive), 0)
            best = room if best is None else min(best, room)
        if folder == mount or mount not in folder.parents:
            return best
        folder = folder.parent


def _v1_room(mount: Path, relative: str) -> int | None:
    folder = mount / relative
    if not (folder / "memory.usage_in_bytes").exists():
        folder = mount  # the process's cgroup is not visible here (a container's own root)
    stat = _stat(folder / "memory.stat")
    limit = stat.get("hierarchical_memory_limit") or _read_int(folder / "memory.limit_in_bytes")
    if limit is None or limit >= UNLIMITED_CGROUP:
        return None
    usage = _read_int(folder / "memory.usage_in_bytes") or 0
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    return max(limit - (usage - inactive), 0)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # v2 writes "max" for no limit


def _stat(path: Path) -> dict[str, int]:
    out = {}
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[name] = int(value)
    except OSError:
        pass
    return out


def visible_gpu_indices() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list (None: unset, every GPU is visible; []: none is)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    visible = []
    for item in items:
        if item.startswith("-"):  # CUDA stops at the first invalid index
            break
        visible.append(item)
    return visible
