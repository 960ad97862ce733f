"""Whether a method fits a memory budget by the estimator (`advisor/memory.py`), and the
changes that would make it fit, least disruptive first (`suggest_fit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.architectures import ModelShape
from advisor.memory import MemoryEstimate, estimate

# Standard GPU memory sizes, for "a GPU of N GB" suggestions.
GPU_SIZES_GB = (8, 12, 16, 24, 32, 40, 48, 80, 96, 141, 192)
# Device counts for "N GPUs with FSDP" suggestions: powers of two, so that the usual batch
# sizes divide among them; up to 8 nodes of 8.
DEVICE_COUNTS = (2, 4, 8, 16, 32, 64)


def fits(
    shape: ModelShape, method: str, gpu_memory_gb: float, **settings
) -> tuple[bool, MemoryEstimate]:
    """Whether `method` fits a GPU of `gpu_memory_gb` (or, with `device="cpu"`, a machine with
    that much RAM), and the estimate it rests on."""
    est = estimate(shape, method, **{"device": "gpu", **settings})
    return est.total_gb <= gpu_memory_gb, est


@dataclass(frozen=True)
class FitSuggestion:
    """One change that makes a method fit, with the estimate after the change."""

    change: str
    estimate: MemoryEstimate


def suggest_fit(
    shape: ModelShape, method: str, gpu_memory_gb: float, **settings
) -> list[FitSuggestion]:
    """Changes that would make `method` fit `gpu_memory_gb`, least disruptive first.

    Empty when it fits already. On a GPU, first the smallest number of such GPUs that FSDP
    would fit the same settings on ("full-ft needs 4 x 24 GB GPUs with FSDP"), where one does.
    Then the single changes that fit on their own: gradient checkpointing, the paged 8-bit
    optimizer (full fine-tuning), the largest smaller batch, the longest shorter sequence, QLoRA
    instead of LoRA or full fine-tuning. When none does, the first combination of them that
    fits, in that order. Last, always, the smallest common GPU size the current settings fit.
    """
    ok, current = fits(shape, method, gpu_memory_gb, **settings)
    if ok:
        return []
    setup = current.setup

    def attempt(update: dict) -> MemoryEstimate | None:
        new = {**settings, **update}
        ok, est = fits(shape, new.pop("method", method), gpu_memory_gb, **new)
        return est if ok else None

    easy: list[tuple[str, dict]] = []
    if method != "inference" and not setup.gradient_checkpointing:
        easy.append(("turn on gradient checkpointing", {"gradient_checkpointing": True}))
    if method == "full-ft" and setup.optimizer == "adamw":
        easy.append(("use the paged 8-bit AdamW optimizer", {"optimizer": "paged-adamw-8bit"}))
    smaller = [
        [(f"lower the batch to {b}", {"batch": b}) for b in _halvings(setup.batch, 1)],
        [(f"shorten sequences to {q} tokens", {"seq": q}) for q in _halvings(setup.seq, 128)],
    ]
    switch = []
    if method in ("lora", "full-ft"):
        # QLoRA is not sharded here: on several devices it is DDP's whole copy on each.
        qlora = {"method": "qlora", "strategy": "ddp", "cpu_offload": False}
        switch.append((f"use QLoRA instead of {method}", qlora))

    suggestions = []
    if sharded := _more_devices(shape, method, gpu_memory_gb, settings, setup):
        suggestions.append(sharded)
    for change, update in easy:
        if est := attempt(update):
            suggestions.append(FitSuggestion(change, est))
    for options in smaller:  # the largest batch (longest sequence) that fits on its own
        for change, update in options:
            if est := attempt(update):
                suggestions.append(FitSuggestion(change, est))
                break
    for change, update in switch:
        if est := attempt(update):
            suggestions.append(FitSuggestion(change, est))
    if len(suggestions) == bool(sharded):
        suggestions.extend(_combination(easy, smaller, switch, attempt))

    need = current.total_gb
    size = next((s for s in GPU_SIZES_GB if s >= need), None)
    if setup.device == "cpu":
        change = f"use a machine with {math.ceil(need)} GB of memory"
    else:
        change = f"use a GPU with {size} GB" if size else f"use GPUs with {need:.0f} GB in all"
    suggestions.append(FitSuggestion(change, current))
    return suggestions


def _more_devices(shape, method, gpu_memory_gb, settings, setup) -> FitSuggestion | None:
    """The smallest count of such GPUs that FSDP fits the same per-device settings on (full
    fine-tuning with AdamW: bitsandbytes' 8-bit optimizers do not step sharded parameters;
    QLoRA is not sharded here), or None."""
    if setup.device != "gpu" or not setup.trains or method == "qlora":
        return None
    sharded = {**settings, "strategy": "fsdp"}
    if method == "full-ft":
        sharded["optimizer"] = "adamw"
    for n in (n for n in DEVICE_COUNTS if n > setup.devices):
        ok, est = fits(shape, method, gpu_memory_gb, **{**sharded, "devices": n})
        if ok:
            size = f"{round(gpu_memory_gb, 1):g}"
            return FitSuggestion(
                f"{method} needs {n} x {size} GB GPUs with FSDP (--devices {n})", est
            )
    return None


def _halvings(value: int, floor: int) -> list[int]:
    out, value = [], value // 2
    while value >= floor:
        out.append(value)
        value //= 2
    return out


def _combination(easy, smaller, switch, attempt) -> list[FitSuggestion]:
    """The first cumulative set of changes that fits (easy ones, then batch, then seq), found
    once keeping the method and once with QLoRA, where that is an option."""
    found = []
    for use_switch in ([], switch) if switch else ([],):
        changes, update = [], {}
        for change, step in use_switch + easy:
            changes.append(change)
            update.update(step)
        est = attempt(update) if changes else None
        if est:
            found.append(FitSuggestion(" and ".join(changes), est))
            continue
        for options in smaller:
            hit = next(((c, e) for c, step in options if (e := attempt({**update, **step}))), None)
            if hit:
                found.append(FitSuggestion(" and ".join([*changes, hit[0]]), hit[1]))
                break
            if options:
                changes.append(options[-1][0])
                update.update(options[-1][1])
    return found


def after_out_of_memory(method: str, settings: dict) -> str:
    """What to change after `method` really ran out of memory while training with `settings`
    (a fit's record: gradient_checkpointing, micro_batch, seq), least disruptive first: the
    one advice the trainer's error and the run's record of the failure give. The estimator's
    `suggest_fit` is for a fit it can compute; this is for a run that proved it wrong."""
    if not settings.get("gradient_checkpointing"):
        return "turn on gradient checkpointing (finetune gradient_checkpointing: true)"
    micro = settings.get("micro_batch") or 1
    if micro > 1:
        return (
            f"lower the micro-batch (now {micro}; finetune gradient_accumulation_steps keeps "
            "the batch)"
        )
    seq = settings.get("seq")
    shorter = f"shorten sequences (finetune max_length{f', now {seq}' if seq else ''})"
    if method == "full-ft":
        return f"{shorter}, or use lora or qlora instead of full-ft"
    return f"{shorter}, or use qlora" if method == "lora" else shorter
