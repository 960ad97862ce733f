"""How a step's packed sequences become tensors.

TRL packs prompt/completion rows best-fit-decreasing into sequences of up to `max_length` tokens
(each with its rows' `seq_lengths`), and its padding-free collator then flattens a whole batch
into one sequence. That suits varlen kernels (flash attention); with SDPA or eager attention,
the usual CPU case, attention then spans the whole flattened step under a mask.

`FlatBatchCollator` also flattens the step, with no padding at all, and passes each row's
offsets, so that attention runs within each row (finetune/row_attention.py, for SDPA models on a
CPU). `PackedBatchCollator` keeps one packed sequence per batch row instead, padded to the
longest: position ids restart at each packed row, so the model builds a block-diagonal causal
mask per sequence (transformers' packed-sequence detection) and no row attends to another. It
serves models that cannot use row attention.

`PaddedRowsCollator` is the benchmark's baseline: the same rows in the same steps, each row
unpacked and padded to `max_length` (the collate of the instruction fine-tuning seed). The loss
is the same sum over the same completion tokens, so both layouts train identically and only the
time differs.
"""

from __future__ import annotations

from dataclasses import dataclass


def _rows_of(example: dict) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of each row packed into one sequence."""
    ids, labels = example["input_ids"], example.get("labels", example["input_ids"])
    lengths = example.get("seq_lengths") or [len(ids)]
    rows, start = [], 0
    for n in lengths:
        rows.append((ids[start : start + n], labels[start : start + n]))
        start += n
    return rows


def _first_label_masked(labels: list[int]) -> list[int]:
    # A row's first token is predicted by the previous row's last token when rows share a
    # sequence; that label must not count (TRL's flattening collator masks it too). Masking it
    # everywhere keeps packed and padded layouts computing the same loss.
    return [-100, *labels[1:]] if labels else labels


@dataclass
class PackedBatchCollator:
    """One packed sequence per batch row, right-padded to the longest; position ids restart at
    every packed row so attention stays within it."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        # Padding gets position 0 on every token: each pad is then its own one-token sequence.
        positions = torch.zeros((len(examples), width), dtype=torch.long)
        for i, example in enumerate(examples):
            start = 0
            for ids, row_labels in _rows_of(example):
                end = start + len(ids)
                input_ids[i, start:end] = torch.tensor(ids)
                labels[i, start:end] = torch.tensor(_first_label_masked(row_labels))
                positions[i, start:end] = torch.arange(len(ids))
                start = end
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions}


# A shorter common opening is not worth a separate attention call per layer.
MIN_SHARED_PREFIX = 8


@dataclass
class FlatBatchCollator:
    """Every row of the step's packed sequences end to end in one sequence, no padding, with the
    rows' offsets (`cu_seq_lens_q/k`, as flash attention's varlen kernel takes them) and the
    longest row (`max_length_q/k`) for attention that stays within each row.

    With `share_prefix`, the prompt tokens that open every row of the step (a chat template's
    system turn, the instruction and label list) appear once, at the start, as
    `shared_prefix_len` tokens that every row attends to, and each row keeps only the rest. The
    prefix's hidden states are the same in every row (causal attention, same positions) and
    carry no loss, so the loss and gradients are those of the rows laid out whole.
    """

    share_prefix: bool = True

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        rows = [
            (ids, _first_label_masked(labels))
            for example in examples
            for ids, labels in _rows_of(example)
            if ids
        ]
        shared = _shared_prompt_prefix(rows) if self.share_prefix else 0
        ids = list(rows[0][0][:shared])
        labels = [-100] * shared
        positions = list(range(shared))
        for row_ids, row_labels in rows:
            ids += row_ids[shared:]
            labels += row_labels[shared:]
            positions += range(shared, len(row_ids))
        lengths = [len(row_ids) - shared for row_ids, _ in rows]
        offsets = torch.tensor([shared, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
        longest = max(lengths)
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            "cu_seq_lens_q": offsets,
            "cu_seq_lens_k": offsets,
            "max_length_q": longest,
            "max_length_k": longest,
            "shared_prefix_len": shared,
        }


def _shared_prompt_prefix(rows: list[tuple[list[int], list[int]]]) -> int:
    """Tokens that open every row, up to the token before each row's first labelled token (so
    every row keeps at least one prompt token and all of its loss); 0 when fewer than
    MIN_SHARED_PREFIX or a single row."""
    if len(rows) < 2:
        return 0
    first = rows[0][0]
    limit = min(
        next((k for k, label in enumerate(labels) if label != -100), len(labels)) - 1
        for _, labels in rows
    )
    limit = min(limit, *(len(ids) - 1 for ids, _ in rows))
    shared = 0
    while shared < limit and all(ids[shared] == first[shared] for ids, _ in rows):
        shared += 1
    return shared if shared >= MIN_SHARED_PREFIX else 0


@dataclass
class PaddedRowsCollator:
    """Every row of the step's packed sequences on its own batch row, padded to `max_length`
    (right padding; causal attention keeps real tokens from seeing it, as in the seed)."""

    pad_token_id: int
    max_length: int

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        rows = [row for example in examples for row in _rows_of(example)]
        input_ids = torch.full((len(rows), self.max_length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), self.max_length), -100, dtype=torch.long)
        for i, (ids, row_labels) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(ids)] = torch.tensor(_first_label_masked(row_labels))
        return {"input_ids": input_ids, "labels": labels}
