"""Log-likelihood of candidate continuations (labels) after a prompt, lm-evaluation-harness style.

The prompt is run once: first its shared prefix, then a batch of query "middles" (the real
input and the content-free ones) on top of the prefix's cached keys/values, then every label
on top of each middle, all labels in one batch. One full forward per label would recompute the
whole prompt for each of them (see bench/bench_label_scoring.py for the measured ratio).
"""

from __future__ import annotations

import copy

import numpy as np
import torch


class ContinuationScorer:
    """Sums log-probabilities of continuation token ids after prefix + middle token ids."""

    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self._cache_name = _cache_parameter(model)

    def _cache_arg(self, cache) -> dict:
        return {self._cache_name: cache}

    @torch.inference_mode()
    def prefix_state(self, prefix: list[int]):
        """The prefix's pass (its keys/values and mask), to share between several `score`
        calls on the same prefix: chunks of one group's rows run it once, not once each."""
        device = self.model.device
        if not prefix:
            return None, torch.ones((1, 0), dtype=torch.long, device=device)
        ids = torch.tensor([prefix], device=device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return _cache_of(out), torch.ones_like(ids)

    @torch.inference_mode()
    def score(
        self,
        prefix: list[int],
        middles: list[list[int]],
        continuations: list[list[int]],
        state=None,
    ) -> np.ndarray:
        """Return a [len(middles), len(continuations)] array of summed log-probabilities.
        `state` is `prefix_state(prefix)`, computed once by the caller (else here)."""
        if not middles or not continuations:
            raise ValueError("need at least one middle and one continuation")
        if any(not c for c in continuations):
            raise ValueError("every continuation needs at least one token")
        device = self.model.device
        cache, prefix_mask = state if state is not None else self.prefix_state(prefix)

        # Middles, left-padded so that every row's last real token sits in the last column.
        # The pads sit between prefix and middle; the mask hides them and position ids skip them.
        n_mid, width = len(middles), max(len(m) for m in middles)
        mid_ids = torch.full((n_mid, width), self.pad_id, dtype=torch.long, device=device)
        mid_mask = torch.zeros((n_mid, width), dtype=torch.long, device=device)
        mid_pos = torch.zeros((n_mid, width), dtype=torch.long, device=device)
        for i, m in enumerate(middles):
            if not m:
                raise ValueError("every middle needs at least one token")
            mid_ids[i, width - len(m) :] = torch.tensor(m, device=device)
            mid_mask[i, width - len(m) :] = 1
            mid_pos[i, width - len(m) :] = torch.arange(len(m), device=device) + len(prefix)
        mask = torch.cat([prefix_mask.expand(n_mid, -1), mid_mask], dim=1)
        out = self.model(
            input_ids=mid_ids,
            attention_mask=mask,
            position_ids=mid_pos,
            **self._cache_arg(_fork(cache, n_mid)),
            use_cache=True,
            logits_to_keep=1,
        )
        first_logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [n_mid, V]
        cache = _cache_of(out)

        # Continuations: every middle row repeated once per continuation, right-padded.
        n_cont, cwidth = len(continuations), max(len(c) for c in continuations)
        cont_ids = torch.full((n_cont, cwidth), self.pad_id, dtype=torch.long, device=device)
        cont_mask = torch.zeros((n_cont, cwidth), dtype=torch.long, device=device)
        for j, c in enumerate(continuations):
            cont_ids[j, : len(c)] = torch.tensor(c, device=device)
            cont_mask[j, : len(c)] = 1
        first_tokens = cont_ids[:, 0]
        totals = first_logprobs[:, first_tokens]  # [n_mid, n_cont]
        if cwidth > 1:
            cache.batch_repeat_interleave(n_cont)
            mid_lengths = torch.tensor([len(m) for m in middles], device=device)
            pos = (len(prefix) + mid_lengths).repeat_interleave(n_cont)[:, None]
            pos = pos + torch.arange(cwidth, device=device)[None, :]
            mask = torch.cat(
                [mask.repeat_interleave(n_cont, dim=0), cont_mask.repeat(n_mid, 1)], dim=1
            )
            out = self.model(
                input_ids=cont_ids.repeat(n_mid, 1),
                attention_mask=mask,
                position_ids=pos,
                **self._cache_arg(cache),
                use_cache=True,
                logits_to_keep=cwidth,
            )
            logprobs = torch.log_softmax(out.logits[:, :-1, :].float(), dim=-1)
            targets = cont_ids.repeat(n_mid, 1)[:, 1:]
            picked = logprobs.gather(-1, targets[..., None]).squeeze(-1)
            picked = picked * cont_mask.repeat(n_mid, 1)[:, 1:]
            totals = totals + picked.sum(dim=1).view(n_mid, n_cont)
        return totals.cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def score_full(self, prompt: list[int], continuations: list[list[int]]) -> np.ndarray:
        """Reference: one full forward per continuation (what the cache avoids)."""
        device = self.model.device
        scores = []
        for c in continuations:
            ids = torch.tensor([prompt + c], device=device)
            logits = self.model(input_ids=ids).logits[0, len(prompt) - 1 : -1, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            scores.append(float(logprobs.gather(-1, torch.tensor(c, device=device)[:, None]).sum()))
        return np.array(scores)


def _cache_parameter(model) -> str:
    """transformers 5.2x names the KV cache `cache` (and warns on every `past_key_values`);
    earlier 5.x releases know only `past_key_values`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        parameters = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _fork(cache, repeats: int):
    """A copy of a batch-1 cache repeated `repeats` times, leaving the original untouched."""
    if cache is None:
        return None
    forked = copy.deepcopy(cache)
    forked.batch_repeat_interleave(repeats)
    return forked
