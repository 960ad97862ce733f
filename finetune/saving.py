"""What training leaves on disk: the adapter (or full model), the merged model, each written
next to its target and swapped in, so that an interruption never leaves half of one."""

from __future__ import annotations

import shutil
from pathlib import Path

from finetune.config import FinetuneConfig


def save_trained(
    model, tokenizer, config: FinetuneConfig, folder: Path, write: bool = True, sharded=False
) -> dict:
    """The adapter in PEFT format (LoRA, QLoRA) or the full model (full-ft), atomically;
    `write` False only names the folder (the other processes of a multi-process run). A
    `sharded` (FSDP) full model is gathered to the first process by every process together;
    the others write nothing (their part goes to a folder that is then removed)."""
    key = "adapter" if config.uses_lora else "model"
    target = folder / key
    # A sharded adapter is saved from its own tensors (see adapter_state), by the first process.
    state = {"state_dict": adapter_state(model)} if sharded and config.uses_lora else {}
    if write:
        save_dir(
            target, lambda d: (model.save_pretrained(d, **state), tokenizer.save_pretrained(d))
        )
    elif sharded and not config.uses_lora:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="adaptwise-gather-") as scratch:
            model.save_pretrained(scratch, is_main_process=False)
    return {key: str(target)}


def adapter_state(model) -> dict:
    """The LoRA adapter's tensors of a model sharded as it loaded (FSDP): added after sharding,
    they are whole on every process, so saving them needs no gathering (peft, given no state
    dict, gathers the whole sharded base model onto every process to pick them out)."""
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


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
