"""Peak memory of one step: GPU memory where a GPU runs it, process RSS on CPU."""

from __future__ import annotations

import os
import resource
import threading


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class PeakMemory:
    """Context manager that samples RSS every `interval` seconds (and CUDA peak if present)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mb = 0.0
        self.kind = "process RSS"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cuda = False

    def __enter__(self) -> PeakMemory:
        import sys

        torch = sys.modules.get("torch")
        self._cuda = bool(torch is not None and torch.cuda.is_available())
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
            self.kind = "GPU memory"
        self.peak_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, current_rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._cuda:
            import torch

            self.peak_mb = torch.cuda.max_memory_allocated() / 1e6
        self.peak_mb = round(max(self.peak_mb, 0.0), 1)
