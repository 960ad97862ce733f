"""What every process adaptwise starts does first: the CLI, the TUI's job process, the
benchmarks and the test suite, before torch, transformers or bitsandbytes is imported."""

from __future__ import annotations


def start_process() -> None:
    """Offline and kernel-free (offline.py), the C heap fitted to any address-space limit
    (allocator.py), and the library messages nobody can act on silenced (quiet.py)."""
    from experiments.allocator import fit_allocator_to_limits
    from experiments.offline import stay_offline
    from experiments.quiet import quiet_libraries

    stay_offline()
    fit_allocator_to_limits()
    quiet_libraries()
