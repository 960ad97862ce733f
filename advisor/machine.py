"""What this machine offers a run: CPU cores, memory, and an NVIDIA GPU if there is one.

Read without importing torch (nvidia-smi and /proc), so the advisor and the plan stay quick.
The memory a run may use is the tightest limit on this process (advisor/memory_limits.py), not
the RAM fitted, and on a GPU the free memory of the first GPU that CUDA_VISIBLE_DEVICES shows.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Machine:
    cpus: int
    ram_gb: float
    gpu_name: str | None = None
    gpu_memory_gb: float | None = None
    # The tightest limit on this process's memory and its name (memory_limits.py); None where
    # it was not read (a machine described by hand).
    usable_gb: float | None = None
    usable_source: str | None = None
    gpu_free_gb: float | None = None  # free memory on the GPU when it was read

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_memory_gb else "cpu"

    @property
    def memory_gb(self) -> float:
        """The memory a run's peak must fit in: the GPU's on a GPU, else RAM; the usable part
        where it was read (free GPU memory, the tightest RAM limit)."""
        if self.gpu_memory_gb:
            return self.gpu_free_gb if self.gpu_free_gb is not None else self.gpu_memory_gb
        return min(self.ram_gb, self.usable_gb) if self.usable_gb is not None else self.ram_gb

    @property
    def memory_source(self) -> str:
        """Which limit `memory_gb` is."""
        if self.gpu_memory_gb:
            return "free GPU memory" if self.gpu_free_gb is not None else "GPU memory"
        if self.usable_gb is not None and self.usable_gb < self.ram_gb:
            return self.usable_source or "memory limit"
        return "RAM"

    def describe(self) -> str:
        if self.gpu_memory_gb:
            return f"{self.gpu_name or 'GPU'} {self.gpu_memory_gb:g} GB"
        described = f"CPU, {self.cpus} cores, {self.ram_gb:.0f} GB RAM"
        if self.memory_source not in ("RAM", "MemAvailable"):
            described += f" ({self.memory_gb:.1f} GB usable under {self.memory_source})"
        return described

    def key(self) -> str:
        """Identifies the machine for cached timings: host, CPU model and count, GPU."""
        parts = [platform.node(), _cpu_model(), str(self.cpus), str(self.gpu_name)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "device": self.device,
            "memory_gb": self.memory_gb,
            "memory_source": self.memory_source,
        }


def detect_gpu() -> tuple[str | None, float | None]:
    """Name and total memory (GB) of the first NVIDIA GPU this process may use (the first of
    CUDA_VISIBLE_DEVICES where it is set); (None, None) when there is none."""
    name, total, _free = detect_gpu_memory()
    return name, total


def detect_gpu_memory() -> tuple[str | None, float | None, float | None]:
    """(name, total GB, free GB) of the first GPU this process may use, or (None, None, None).

    nvidia-smi ignores CUDA_VISIBLE_DEVICES, so the visible GPU is asked for by name: an index
    or a UUID, as CUDA takes them; an empty value hides every GPU, as it does for CUDA."""
    from advisor.memory_limits import visible_gpu_indices

    visible = visible_gpu_indices()
    if visible == [] or not shutil.which("nvidia-smi"):
        return None, None, None
    query = ["nvidia-smi", "--query-gpu=name,memory.total,memory.free"]
    query += ["--format=csv,noheader,nounits"] + (["-i", visible[0]] if visible else [])
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True).stdout
        name, total, free = out.splitlines()[0].rsplit(",", 2)
        return name.strip(), round(float(total) / 1024, 1), round(float(free) / 1024, 1)
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None, None, None


def detect_gpu_gb() -> float | None:
    return detect_gpu()[1]


def ram_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return 8.0


def this_machine(gpu_memory_gb: float | None = -1.0) -> Machine:
    """This machine as this process sees it; `gpu_memory_gb` overrides detection (None: CPU
    only; a size: a GPU of that size, all of it free)."""
    from advisor.memory_limits import tightest_ram_bound

    if gpu_memory_gb == -1.0:
        name, total, free = detect_gpu_memory()
    else:
        name, total, free = None, gpu_memory_gb, None
    bound = tightest_ram_bound()
    return Machine(
        os.cpu_count() or 1,
        ram_gb(),
        name,
        total,
        usable_gb=None if bound is None else round(bound.gb, 2),
        usable_source=None if bound is None else bound.source,
        gpu_free_gb=free,
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
