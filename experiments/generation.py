"""Greedy generation in batches: prompts sorted by length, left-padded, KV cache on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    generated_tokens: int


def stop_token_ids(tokenizer, answer_end: str, stop_at_newline: bool) -> list[int]:
    """Token ids that end an answer: end of turn, EOS, and for short answers a newline."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for text in [answer_end] + (["\n", "\n\n"] if stop_at_newline else []):
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        if len(encoded) == 1:
            ids.add(encoded[0])
    return sorted(ids)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    stop_ids: list[int],
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Greedy continuations of `prompts`, in their order; `batch_size=1` is the slow path."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[Generation | None] = [None] * len(prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        out = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=pad,
        )
        new = out[:, width:].cpu()
        for row, i in enumerate(batch):
            tokens = new[row].tolist()
            cut = next((k for k, t in enumerate(tokens) if t in stop_ids), len(tokens))
            text = tokenizer.decode(tokens[:cut], skip_special_tokens=True)
            results[i] = Generation(text.strip(), len(encoded[i]), cut)
        if on_batch:
            on_batch(len(batch))
    return results  # type: ignore[return-value]
