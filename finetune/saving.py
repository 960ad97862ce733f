"""What training leaves on disk: the adapter (or full model), the merged model, each written
next to its target and swapped in, so that an interruption never leaves half of one."""

from __future__ import annotations

import shutil
from pathlib import Path

from finetune.config import FinetuneConfig


def save_trained(
    model, tokenizer, config: FinetuneConfig, folder: Path, write: bool = True
) -> dict:
    """The adapter in PEFT format (LoRA, QLoRA) or the full model (full-ft), atomically;
    `write` False only names the folder (the other processes of a multi-process run)."""
    key = "adapter" if config.uses_lora else "model"
    target = folder / key
    if write:
        save_dir(target, lambda d: (model.save_pretrained(d), tokenizer.save_pretrained(d)))
    return {key: str(target)}


def save_dir(target: Path, write) -> None:
    """Write a folder next to `target`, then swap it in: a crash never leaves half of one."""
    staging = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    write(str(staging))
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)


def save_merged(model, tokenizer, folder: str) -> None:
    """Save base + LoRA deltas as a plain model without merging into the weights in memory."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    state = {}
    for key, tensor in base.state_dict().items():
        if ".lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = tensor
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and module.active_adapters:
            weight = module.get_base_layer().weight
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            state[f"{name}.weight"] = (weight.float() + delta.float()).to(weight.dtype)
    base.save_pretrained(folder, state_dict=state)
    tokenizer.save_pretrained(folder)
