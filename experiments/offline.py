"""Nothing reaches the network at run time except a server the user named, and no remote code.

`stay_offline()` runs first in every process adaptwise starts (the CLI, the TUI's job process,
the benchmarks, the test suite), before torch, transformers or bitsandbytes is imported:

- The model hub is offline (`HF_HUB_OFFLINE=1`) unless the user set that variable: the models
  adaptwise ships load from local folders, and a library that looks something up on the hub
  "just in case" gets a refusal instead of a name lookup. Naming a hub model (`--model
  org/name`, a hub embedder) is asking for the hub: `allow_hub()` turns it back on for that.
- Hub kernels are never loaded, hub or no hub. The `kernels` package downloads compiled code
  from the model hub and loads it into the process; bitsandbytes' CPU backend asks it for one
  when it is imported on a CPU with AVX-512 BF16, and transformers asks it when it loads a GGUF
  file. Every one of kernels' hub paths starts at `kernels._internals.hf_hub._get_hf_api`; it
  is replaced, the moment that module is imported, by one that refuses. The callers treat the
  refusal as "no kernel" and use their own code (bitsandbytes' C++ CPU kernels, transformers'
  unpacking). transformers' and kernels' own switches (USE_HUB_KERNELS, DISABLE_KERNEL_MAPPING)
  are set too, so that nothing asks in the first place where they are honoured.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

KERNELS_HUB_MODULE = "kernels._internals.hf_hub"
# Set beside HF_HUB_OFFLINE when adaptwise set it (and inherited by the processes it starts), so
# that a user's own HF_HUB_OFFLINE, either way, is never overridden.
OFFLINE_BY_ADAPTWISE = "ADAPTWISE_SET_HF_HUB_OFFLINE"


class HubKernelsRefused(RuntimeError):
    """What a library that asks for a hub kernel gets: it falls back to its own code."""


def _refuse_hub_kernels(*_args, **_kwargs):
    raise HubKernelsRefused("adaptwise loads no kernels from the model hub (remote code)")


def stay_offline() -> None:
    """Make this process offline and kernel-free (module docstring); safe to call again."""
    if "HF_HUB_OFFLINE" not in os.environ:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ[OFFLINE_BY_ADAPTWISE] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ["USE_HUB_KERNELS"] = "NO"
    os.environ["DISABLE_KERNEL_MAPPING"] = "1"
    _patch_loaded_kernels()
    if not any(isinstance(f, _RefuseHubKernels) for f in sys.meta_path):
        sys.meta_path.insert(0, _RefuseHubKernels())


def allow_hub() -> None:
    """The user named a hub model: let huggingface_hub reach the hub for it. Hub kernels stay
    refused, and a user's own HF_HUB_OFFLINE=1 is kept."""
    if os.environ.get(OFFLINE_BY_ADAPTWISE) != "1":
        return  # the user chose offline mode (or online) themselves
    os.environ["HF_HUB_OFFLINE"] = "0"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = False


def _patch_loaded_kernels() -> None:
    """Where kernels is imported already, every module that took `_get_hf_api` gets the
    refusing one (they import it by name, so the source module alone is not enough)."""
    for name, module in list(sys.modules.items()):
        if (name == "kernels" or name.startswith("kernels.")) and hasattr(module, "_get_hf_api"):
            module._get_hf_api = _refuse_hub_kernels


class _RefuseHubKernels(importlib.abc.MetaPathFinder):
    """Replaces `_get_hf_api` in kernels' hub module as soon as it is executed, before the
    modules that import it by name (load, install, layer) are."""

    def find_spec(self, fullname, path, target=None):
        if fullname != KERNELS_HUB_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module._get_hf_api = _refuse_hub_kernels

        spec.loader.exec_module = exec_module
        return spec
