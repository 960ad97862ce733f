"""The C heap under memory limits: give freed memory back, so the next method can have it.

glibc keeps freed blocks for reuse. Blocks below its mmap threshold (which it raises up to 32 MB
as large blocks are freed: every weight of a small model) come from the heap and arenas, and stay
mapped after `free`. Under `ulimit -v` or `-d`, which count mapped address space, that memory
is lost to the rest of the run: after a method ran out of memory, the next could not even load a
shared library. So where such a limit is set, adaptwise fixes the threshold at 1 MB (large
blocks are mapped and unmapped, so freeing returns them) and caps the arenas at two (each
reserves 64 MB of address space per thread that allocates). Measured on SmolLM2-135M full
fine-tuning under `ulimit -v 5000000`: the run that ran out of memory and lost the next method
with these left alone trained to the end with them. Without such a limit nothing changes:
glibc's defaults are faster, and physical memory is what they save.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

M_ARENA_MAX = -8  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
ARENAS = 2


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def address_space_limited() -> bool:
    """Whether `ulimit -v` or `ulimit -d` bounds this process."""
    return any(
        resource.getrlimit(limit)[0] != resource.RLIM_INFINITY
        for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA)
    )


def fit_allocator_to_limits() -> bool:
    """Under an address-space limit, make freed memory go back (module docstring); True when
    the settings were applied."""
    if not address_space_limited():
        return False
    libc = _libc()
    if libc is None:  # not glibc
        return False
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(M_ARENA_MAX, ARENAS)
    return True


def trim_c_heap() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
