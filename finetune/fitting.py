"""Before a method trains: how much memory it may use, which settings fit it (advisor/fit.py),
and whether the run's shared base model must be freed while it trains.

The budget is the memory this process can have: on a GPU the free memory plus what this process
holds already (torch's reserved blocks and its CUDA context); on a CPU the tightest of the
available RAM, the memory cgroup's limit and `ulimit -v`/`-d`, each plus the shared model's
weights this process holds (advisor/memory_limits.py). `finetune fit_memory_gb:` replaces it
(to leave room for other work, or to test what a smaller machine would do). The budget says
which of them bound it.

LoRA trains on the shared base, so its estimate (which counts the base's weights) is held
against the whole budget. QLoRA and full fine-tuning train their own copy: the shared base
stays loaded when the same settings fit beside it, and is freed for the training otherwise.

Several processes (experiments/distributed.py): the estimate is per device, and so is the
budget: each GPU's own, or on a CPU the machine's memory divided among the processes that share
it. Every process takes the smallest budget of them all, so that all of them choose the same
settings and the same strategy (DDP or FSDP; advisor/fit.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from advisor.memory import GB
from finetune.config import FinetuneConfig


@dataclass(frozen=True)
class MemoryPlan:
    choice: object | None  # advisor.fit.FitChoice; None when the model's shape is unknown
    release_shared: bool
    shared_gb: float
    budget_gb: float | None
    device: str
    budget_source: str | None = None  # which limit the budget is (advisor/memory_limits.py)

    def to_dict(self) -> dict:
        out = self.choice.to_dict() if self.choice is not None else {}
        out.update(
            {
                "device": self.device,
                "budget_gb": None if self.budget_gb is None else round(self.budget_gb, 3),
                "budget_source": self.budget_source,
                "shared_base_gb": round(self.shared_gb, 3),
                "shared_base_freed": self.release_shared,
            }
        )
        return out


def usable_memory_gb(shared_bytes: float = 0.0) -> tuple[float | None, str, str | None]:
    """(GB this process can use, "gpu" or "cpu", which limit that is); GB is None when it
    cannot be read. `shared_bytes`: the shared model's weights, which this process holds and
    a method's estimate counts. On a CPU, the processes of a run on this machine share its
    memory (each holding its own shared model): each gets an equal part."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        from advisor.memory import CUDA_CONTEXT_BYTES

        held = torch.cuda.memory_reserved() + CUDA_CONTEXT_BYTES
        return (free + held) / GB, "gpu", "free GPU memory"
    from advisor.memory_limits import tightest_ram_bound
    from experiments.distributed import local_world_size

    n = local_world_size()
    bound = tightest_ram_bound(shared_bytes * n)
    if bound is None:
        return None, "cpu", None
    if n > 1:
        return bound.gb / n, "cpu", f"{bound.source}, shared by {n} processes"
    return bound.gb, "cpu", bound.source


def model_shape(checkpoint: str):
    """The estimator's shape of the model at `checkpoint`, or None when it cannot be read."""
    from advisor.architectures import read_config, resolve_shape
    from experiments.errors import AdaptwiseError

    try:
        path = Path(checkpoint)
        if (path / "config.json").is_file():
            return read_config(path / "config.json", path.name)
        return resolve_shape(checkpoint)
    except (AdaptwiseError, OSError, ValueError, KeyError, TypeError):
        return None


def shares_base(method: str) -> bool:
    """LoRA trains its adapter on the run's shared base model (one copy); QLoRA and full
    fine-tuning train, and score, a copy of their own."""
    return method == "lora"


def fit_budget(
    config: FinetuneConfig, usable_gb: float | None, source: str | None
) -> tuple[float | None, str | None]:
    """The memory the fit holds the estimate against, and which limit it is: `finetune
    fit_memory_gb:` where set, else what is usable; none with `fit: off`."""
    if config.fit == "off":
        return None, None
    if config.fit_memory_gb is not None:
        return config.fit_memory_gb, "finetune fit_memory_gb"
    return usable_gb, source


def fit_config(
    config: FinetuneConfig,
    shape,
    budget_gb: float | None,
    shared_gb: float,
    precision: str,
    device: str,
    devices: int,
):
    """The fit (advisor/fit.py) for `config` on `devices` devices: (FitChoice, whether the
    shared base is freed). The run and the plan both choose memory settings through this."""
    from advisor.fit import fit_method

    return fit_method(
        shape,
        budget_gb,
        shared_gb,
        shares_base(config.method),
        **fit_settings(config, precision, device, devices),
    )


def plan_memory(
    config: FinetuneConfig, checkpoint: str, precision: str, shared_bytes: float
) -> MemoryPlan:
    """The settings `config.method` trains with, and whether the shared base is freed."""
    from experiments.distributed import smallest, world_size

    shape = model_shape(checkpoint)
    usable, device, source = usable_memory_gb(shared_bytes)
    if world_size() > 1:
        usable = smallest(usable)
        source = f"the smallest of {world_size()} processes' {source}"
    budget, source = fit_budget(config, usable, source)
    shared_gb = shared_bytes / GB
    if shape is None:
        return MemoryPlan(None, False, shared_gb, budget, device, source)
    choice, release = fit_config(config, shape, budget, shared_gb, precision, device, world_size())
    return MemoryPlan(choice, release, shared_gb, budget, device, source)


def fit_settings(config: FinetuneConfig, precision: str, device: str, devices: int) -> dict:
    """The keyword arguments of advisor.fit.choose_settings for `config` (less shape, budget)."""
    return {
        "devices": devices,
        "method": config.method,
        "batch": config.batch_size,
        "seq": config.max_length,
        "precision": precision,
        "device": device,
        "lora_r": config.rank,
        "lora_dropout": config.dropout,
        "lora_targets": config.target_modules,
        **config.memory_settings(),
    }


def apply_choice(config: FinetuneConfig, choice) -> FinetuneConfig:
    """The config with the fit's settings in place of its `auto` ones."""
    if choice is None:
        return resolved(config)
    return replace(
        config,
        gradient_checkpointing="true" if choice.gradient_checkpointing else "false",
        gradient_accumulation_steps=choice.accumulation,
        optimizer=choice.optimizer,
        strategy=choice.strategy,
        cpu_offload=choice.cpu_offload,
    )


def resolved(config: FinetuneConfig) -> FinetuneConfig:
    """`auto` settings as the plain defaults: no checkpointing, no accumulation, AdamW."""
    return replace(
        config,
        gradient_checkpointing="false"
        if config.gradient_checkpointing == "auto"
        else config.gradient_checkpointing,
        gradient_accumulation_steps=config.gradient_accumulation_steps or 1,
        optimizer="adamw" if config.optimizer == "auto" else config.optimizer,
        strategy="ddp" if config.strategy == "auto" else config.strategy,
    )
