"""The memory settings a fine-tuning run uses: the fastest ones the estimator says fit.

`adaptwise plan` and the run call the same `choose_settings`, so the plan shows exactly the
settings the run takes. Three settings trade speed (or, for the optimizer, numerics) for memory:

- gradient checkpointing: each layer's activations are recomputed in the backward pass
  (about a third more compute; the same gradients);
- gradient accumulation: the step's batch runs as N micro-batches (the same effective batch and,
  up to float rounding, the same gradients; a little slower per token on a GPU);
- the optimizer: AdamW, 8-bit AdamW or paged 8-bit AdamW (bitsandbytes); 8-bit state changes
  the numerics, so it is used only when nothing else fits;
- on several devices, the strategy: DDP (a whole copy on each device) or FSDP (parameters,
  gradients and optimizer state sharded across them; each layer is gathered before it computes).

A setting given explicitly (`--finetune gradient_checkpointing=true`, ...) is kept; `auto` ones
are chosen. Candidates are ranked by optimizer (AdamW first), then by strategy (DDP first: it
gathers nothing, so FSDP is chosen only when the model does not fit one device), then by the
time factor below, and the first whose estimate fits the budget (per device) wins. When none
fits, the leanest is returned with `fits` False and the estimator's first suggestion. `batch`
is the effective batch of all devices together: each device takes batch / devices /
accumulation sequences per micro-batch. QLoRA is not sharded, and full fine-tuning under FSDP
steps with AdamW only (bitsandbytes' 8-bit optimizers do not step sharded parameters; LoRA's
adapters are not sharded; finetune/sharding.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

from advisor.architectures import estimator_targets
from advisor.fit_suggestions import suggest_fit
from advisor.memory import OPTIMIZERS, STRATEGIES, estimate

CHECKPOINTING_TIME = 1.33  # one more forward pass per backward pass
ACCUMULATION_TIME = 0.08  # per halving of the micro-batch: smaller matmuls, more launches


@dataclass(frozen=True)
class FitChoice:
    """The settings chosen for one method, and the estimate they rest on."""

    method: str
    precision: str
    batch: int  # the effective batch: packed sequences per optimizer step
    seq: int
    gradient_checkpointing: bool
    accumulation: int
    optimizer: str
    estimate_gb: float
    budget_gb: float | None  # None: no budget known, the configured settings kept
    fits: bool
    auto: tuple[str, ...] = ()  # the settings that were chosen rather than given
    suggestion: str | None = None  # when it does not fit: the estimator's first change
    devices: int = 1  # processes training together, one per device
    strategy: str = "ddp"  # ddp (one device: alone) | fsdp
    cpu_offload: bool = False  # fsdp: the shards in host memory

    @property
    def micro_batch(self) -> int:
        """Sequences one device takes per forward pass."""
        return max(1, self.batch // self.devices // self.accumulation)

    def describe(self) -> str:
        """The settings in one short phrase, as `plan` and the run log print them."""
        parts = [
            *self.describe_strategy(),
            self.precision,
            f"batch {self.micro_batch}x{self.accumulation}"
            if self.accumulation > 1
            else f"batch {self.batch}",
            f"seq {self.seq}",
            "checkpointing" if self.gradient_checkpointing else "no checkpointing",
            self.optimizer,
        ]
        return ", ".join(parts)

    def describe_strategy(self) -> list[str]:
        """ "fsdp over 4 devices (CPU offload)" or "ddp over 2 devices"; nothing for one device."""
        if self.devices == 1 and self.strategy == "ddp":
            return []
        offload = " (CPU offload)" if self.cpu_offload else ""
        return [f"{self.strategy} over {self.devices} devices{offload}"]

    def finetune_flags(self) -> str:
        """The same settings as `--finetune` options (to pin them on a run)."""
        return (
            f"--finetune gradient_checkpointing={str(self.gradient_checkpointing).lower()} "
            f"--finetune gradient_accumulation_steps={self.accumulation} "
            f"--finetune optimizer={self.optimizer}"
            + (f" --finetune strategy={self.strategy}" if self.devices > 1 else "")
        )

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "batch": self.batch,
            "micro_batch": self.micro_batch,
            "gradient_accumulation_steps": self.accumulation,
            "seq": self.seq,
            "gradient_checkpointing": self.gradient_checkpointing,
            "optimizer": self.optimizer,
            "estimate_gb": round(self.estimate_gb, 3),
            "budget_gb": None if self.budget_gb is None else round(self.budget_gb, 3),
            "fits": self.fits,
            "chosen": list(self.auto),
            "suggestion": self.suggestion,
            "strategy": self.strategy,
            "devices": self.devices,
            "cpu_offload": self.cpu_offload,
        }


def choose_settings(
    shape,
    method: str,
    batch: int,
    seq: int,
    precision: str,
    device: str,
    budget_gb: float | None,
    gradient_checkpointing: bool | None = None,
    accumulation: int | None = None,
    optimizer: str | None = None,
    lora_r: int = 16,
    lora_dropout: float = 0.0,
    lora_targets: str | tuple[str, ...] | list[str] = "all-linear",
    devices: int = 1,
    strategy: str | None = None,
    cpu_offload: bool = False,
) -> FitChoice:
    """The fastest settings for `method` whose estimated peak per device fits `budget_gb`
    (module docstring). None for a setting means "choose it"; a `budget_gb` of None keeps the
    defaults (no checkpointing, no accumulation, AdamW, DDP) for the settings not given."""
    targets = estimator_targets(lora_targets)
    common = {
        "seq": seq,
        "precision": precision,
        "device": device,
        "lora_r": lora_r,
        "lora_dropout": lora_dropout,
        "lora_targets": targets,
        "devices": devices,
    }
    auto = tuple(
        name
        for name, value in (
            ("gradient_checkpointing", gradient_checkpointing),
            ("gradient_accumulation_steps", accumulation),
            ("optimizer", optimizer),
            ("strategy", strategy if devices > 1 else "ddp"),
        )
        if value is None
    )
    per_device = max(1, batch // devices)
    given = {
        "gradient_checkpointing": gradient_checkpointing,
        "accumulation": accumulation,
        "optimizer": optimizer,
        "strategy": strategy,
        "cpu_offload": cpu_offload,
    }
    grid, cpu_offload = _setting_grid(method, device, devices, per_device, budget_gb, given)
    candidates = _candidates(shape, method, per_device, grid, cpu_offload, common)

    def choice(c, fits: bool, suggestion: str | None = None) -> FitChoice:
        given = {"method": method, "precision": precision, "batch": batch, "seq": seq}
        return _fit_choice(c, given, budget_gb, fits, auto, suggestion, devices)

    if budget_gb is None:
        return choice(candidates[0], True)
    for c in candidates:
        if c[5].total_gb <= budget_gb:
            return choice(c, True)
    leanest = min(candidates, key=lambda c: c[5].total_bytes)
    _, ckpt, accum, opt, strat, est = leanest
    hints = suggest_fit(
        shape,
        method,
        max(budget_gb, 0.01),
        batch=est.setup.batch,
        optimizer=opt,
        gradient_checkpointing=ckpt,
        strategy=strat,
        cpu_offload=est.setup.cpu_offload,
        **common,
    )
    return choice(leanest, False, hints[0].change if hints else None)


def _fit_choice(c, given: dict, budget_gb, fits: bool, auto, suggestion, devices) -> FitChoice:
    """A candidate (_candidates) as the FitChoice the run and the plan read."""
    _, ckpt, accum, opt, strat, est = c
    return FitChoice(
        **given,
        gradient_checkpointing=ckpt,
        accumulation=accum,
        optimizer=opt,
        estimate_gb=est.total_gb,
        budget_gb=budget_gb,
        fits=fits,
        auto=auto,
        suggestion=suggestion,
        devices=devices,
        strategy=strat,
        cpu_offload=est.setup.cpu_offload,
    )


def _setting_grid(
    method, device, devices, per_device, budget_gb, given: dict
) -> tuple[tuple[list, list, list, list], bool]:
    """The values to try of checkpointing, accumulation, optimizer and strategy (a setting
    `given` is its one value; None: choose), and whether CPU offload can apply."""
    gradient_checkpointing, accumulation = given["gradient_checkpointing"], given["accumulation"]
    optimizer, strategy, cpu_offload = given["optimizer"], given["strategy"], given["cpu_offload"]
    checkpointing = [False, True] if gradient_checkpointing is None else [gradient_checkpointing]
    accumulations = _divisors(per_device) if accumulation is None else [accumulation]
    optimizers = list(OPTIMIZERS) if optimizer is None else [optimizer]
    if device == "cpu" and optimizer is None:
        optimizers.remove("paged-adamw-8bit")  # paging moves GPU state to the host: no gain here
    if devices == 1:  # one device trains alone, whatever the strategy says
        strategies, cpu_offload = ["ddp"], False
    elif strategy is not None:
        strategies = [strategy]
    elif method != "qlora":
        strategies = list(STRATEGIES)
    else:
        strategies = ["ddp"]
    if budget_gb is None:  # nothing to fit: the first (fastest, AdamW) of each
        checkpointing, accumulations = checkpointing[:1], accumulations[:1]
        optimizers, strategies = optimizers[:1], strategies[:1]
    return (checkpointing, accumulations, optimizers, strategies), cpu_offload


def _candidates(shape, method, per_device, grid, cpu_offload, common) -> list[tuple]:
    """Every combination of the grid with its estimate, fastest first: (sort key, checkpointing,
    accumulation, optimizer, strategy, MemoryEstimate)."""
    checkpointing, accumulations, optimizers, strategies = grid
    candidates = []
    for ckpt, accum, opt, strat in product(checkpointing, accumulations, optimizers, strategies):
        sharded_8bit = strat == "fsdp" and opt != "adamw" and method == "full-ft"
        if sharded_8bit and ("adamw" in optimizers or len(strategies) > 1):
            continue  # bitsandbytes' 8-bit optimizers do not step sharded parameters
        est = estimate(
            shape,
            method,
            batch=max(1, per_device // accum),
            optimizer=opt,
            gradient_checkpointing=ckpt,
            strategy=strat,
            cpu_offload=cpu_offload and strat == "fsdp",
            **common,
        )
        time_factor = (CHECKPOINTING_TIME if ckpt else 1.0) * (
            1 + ACCUMULATION_TIME * math.log2(accum)
        )
        key = (OPTIMIZERS.index(opt), STRATEGIES.index(strat), time_factor, est.total_bytes)
        candidates.append((key, ckpt, accum, opt, strat, est))
    candidates.sort(key=lambda c: c[0])
    return candidates


def fit_method(
    shape, budget_gb: float | None, shared_gb: float, shares_base: bool, **settings
) -> tuple[FitChoice, bool]:
    """The settings for one method and whether the run's shared base is freed while it trains.

    A method that trains on the shared base (LoRA, unless sharded) is held against the whole
    budget (its estimate counts the base's weights). One that trains its own copy (QLoRA,
    full fine-tuning, and LoRA under FSDP, which trains on a sharded copy) keeps the shared
    base loaded when the same settings fit beside it, and frees it otherwise."""
    alone = choose_settings(shape, budget_gb=budget_gb, **settings)
    shares_base = shares_base and alone.strategy != "fsdp"
    if shares_base or budget_gb is None or shared_gb <= 0:
        return alone, False
    beside = choose_settings(shape, budget_gb=budget_gb - shared_gb, **settings)
    same = (
        beside.gradient_checkpointing,
        beside.accumulation,
        beside.optimizer,
        beside.strategy,
    ) == (alone.gradient_checkpointing, alone.accumulation, alone.optimizer, alone.strategy)
    if beside.fits and same:
        return beside, False
    return alone, True


def _divisors(batch: int) -> list[int]:
    """Accumulation steps that split `batch` evenly: 1, 2, 4, ... and `batch` itself."""
    out, a = [], 1
    while a <= batch:
        if batch % a == 0:
            out.append(a)
        a *= 2
    if batch not in out:
        out.append(batch)
    return out
