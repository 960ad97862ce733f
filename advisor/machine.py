"""What this machine offers a run: CPU cores, memory, and an NVIDIA GPU if there is one.

Read without importing torch (nvidia-smi and /proc), so the advisor and the plan stay quick.
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

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_memory_gb else "cpu"

    @property
    def memory_gb(self) -> float:
        """The memory a run's peak must fit in: the GPU's on a GPU, else RAM."""
        return self.gpu_memory_gb if self.gpu_memory_gb else self.ram_gb

    def describe(self) -> str:
        if self.gpu_memory_gb:
            return f"{self.gpu_name or 'GPU'} {self.gpu_memory_gb:g} GB"
        return f"CPU, {self.cpus} cores, {self.ram_gb:.0f} GB RAM"

    def key(self) -> str:
        """Identifies the machine for cached timings: host, CPU model and count, GPU."""
        parts = [platform.node(), _cpu_model(), str(self.cpus), str(self.gpu_name)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {**asdict(self), "device": self.device, "memory_gb": self.memory_gb}


def detect_gpu() -> tuple[str | None, float | None]:
    """Name and total memory (GB) of the first NVIDIA GPU; (None, None) when there is none."""
    if not shutil.which("nvidia-smi"):
        return None, None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        name, mib = out.splitlines()[0].rsplit(",", 1)
        return name.strip(), round(float(mib) / 1024, 1)
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None, None


def detect_gpu_gb() -> float | None:
    return detect_gpu()[1]


def ram_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return 8.0


def this_machine(gpu_memory_gb: float | None = -1.0) -> Machine:
    """This machine; `gpu_memory_gb` overrides detection (None: CPU only)."""
    name, detected = detect_gpu() if gpu_memory_gb == -1.0 else (None, gpu_memory_gb)
    return Machine(os.cpu_count() or 1, ram_gb(), name, detected)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
