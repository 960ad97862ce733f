"""The timing probe: how fast the actual model runs on this machine, measured in a few seconds
and cached per model and machine; and the task's token counts under the model's tokenizer.

The probe times, on the task's own rows: one forward pass over a batch of real zero-shot
prompts (seconds per prompt token), a few greedy generation steps for the same batch (seconds
per step), and one training step (forward, backward, AdamW) on the task's first train rows
as the trainer lays them out (on a CPU: one flattened sequence, the prompt opening the rows
share computed once, the loss on the completion tokens), for every weight (full-ft) and for a
LoRA adapter on every linear layer. Each timed call follows a small warm-up call, so
allocation and kernel selection are not counted.
torch, transformers and peft are imported here, inside the functions only.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from adaptwise.planning.estimates import Rates, TaskStats
from advisor.machine import Machine

PROBE_VERSION = 3
PROBE_ROWS = 2  # prompts in the forward / generation batch
DECODE_STEPS = 4
# The timed training step: about 2 x 256 tokens of the task's rows, laid out as the trainer lays
# them out (on a CPU: flattened, the shared prompt opening once, the loss on the completions).
# Version 1 timed one 64-token sequence with the LM head over every position, and estimated the
# demo's LoRA training at 4x its measured time; version 2 timed 256-token stretches of text,
# which cannot show what the trainer saves by computing the rows' shared opening once.
TRAIN_ROWS = 2
TRAIN_TOKENS = 256
LOSS_EVERY = 25  # where rows are not used: one position in 25 carries loss (~75-token rows)
WARMUP_TOKENS = 8
# Past this many seconds the probe stops measuring and reuses LoRA's step rate for full-ft
# (on a loaded 2-core machine the whole probe takes 15-25 s; an idle one, a few seconds).
PROBE_DEADLINE_S = 20.0


def cache_path(checkpoint: str, machine: Machine) -> Path:
    from experiments.models import cache_dir

    key = f"{PROBE_VERSION}|{checkpoint}|{_mtime(checkpoint)}|{machine.key()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "probe" / f"{digest}.json"


def cached_rates(checkpoint: str, machine: Machine) -> Rates | None:
    path = cache_path(checkpoint, machine)
    try:
        return Rates(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def store_rates(checkpoint: str, machine: Machine, rates: Rates) -> None:
    from experiments.atomic import write_text_atomic

    write_text_atomic(cache_path(checkpoint, machine), json.dumps(rates.to_dict(), indent=2))


def task_stats(task, tokenizer, fmt, n_eval: int, max_new_tokens: int) -> TaskStats:
    """Mean token counts of the task's rows as the run will render them."""

    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def mean(values: list[int]) -> float:
        return sum(values) / len(values) if values else 0.0

    rows = task.eval[:n_eval] or task.eval
    prompts = count([fmt.build([], r.messages).text for r in rows])
    examples = count(
        ["\n".join(m["content"] for m in r.messages) + "\n" + r.output for r in task.train]
    )
    # A shown example also carries its two turns' template tokens (about 10 with ChatML).
    turn_overhead = 10 if fmt.chat else 6
    train = count([fmt.build([], r.messages).text + r.output + fmt.answer_end for r in task.train])
    labels = count([label + fmt.answer_end for label in task.labels])
    return TaskStats(
        name=task.name,
        kind=task.kind,
        n_train=len(task.train),
        n_eval=len(rows),
        n_labels=len(task.labels),
        prompt_tokens=mean(prompts),
        example_tokens=mean(examples) + turn_overhead,
        answer_tokens=mean(count([r.output for r in task.train[:200]])),
        label_tokens=mean(labels),
        train_tokens=sum(train),
        corpus_tokens=_corpus_tokens(task, tokenizer),
        max_new_tokens=max_new_tokens,
    )


def _corpus_tokens(task, tokenizer) -> int:
    if task.corpus is None:
        return 0
    try:
        from rag.corpus import load_corpus
    except ImportError:
        return 0
    try:
        docs = load_corpus(task.corpus)
    except Exception:  # noqa: BLE001 - the run reports a bad corpus; the plan just skips it
        return 0
    texts = [getattr(d, "text", str(d)) for d in docs]
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def measure_rates(lm, task, fmt, machine: Machine) -> Rates:
    """Time the forward pass, generation steps and a training step of `lm` (see module doc)."""
    started = time.perf_counter()
    forward_per_token, decode_step, decode_batch = _inference_rates(lm, task, fmt)
    train = _training_rates(lm.model, lm.tokenizer, task, fmt, started)
    return Rates(
        model=lm.name,
        machine=machine.key(),
        device=machine.device,
        forward_s_per_token=forward_per_token,
        decode_s_per_step=decode_step,
        decode_batch=decode_batch,
        train_s_per_token=train,
        load_s=0.0,
        probe_s=round(time.perf_counter() - started, 2),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _inference_rates(lm, task, fmt) -> tuple[float, float, int]:
    """(seconds per prompt token, seconds per decode step of the batch, the batch's rows)."""
    import torch

    model, tokenizer = lm.model, lm.tokenizer
    device = model.device
    rows = (task.eval or task.train)[:PROBE_ROWS]
    prompts = [fmt.build([], r.messages).text for r in rows]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, add_special_tokens=False, return_tensors="pt", padding=True).to(
        device
    )
    n_tokens = int(batch["attention_mask"].sum())

    with torch.inference_mode():
        model(**_slice(batch, 1))  # warm-up
        forward_s = _timed(lambda: model(**batch), device)

        def generate(inputs, steps):
            return model.generate(
                **inputs,
                max_new_tokens=steps,
                min_new_tokens=steps,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )

        generate(_slice(batch, 1), 2)  # warm-up: the first generate call sets up its caches
        one_step_s = _timed(lambda: generate(batch, 1), device)
        generate_s = _timed(lambda: generate(batch, DECODE_STEPS), device)
    forward_per_token = forward_s / max(n_tokens, 1)
    # The difference of two generate calls isolates the decode steps from the prompt pass; on a
    # busy machine it can come out near zero, so it is floored at one token per row through
    # the forward rate (a decode step is never cheaper than that).
    decode_step = max(
        (generate_s - one_step_s) / (DECODE_STEPS - 1), forward_per_token * len(prompts)
    )
    return forward_per_token, decode_step, len(prompts)


def _training_rates(model, tokenizer, task, fmt, started: float) -> dict[str, float]:
    """Seconds per training token of LoRA (the run's default LoRA) and, within the probe's
    deadline, of full fine-tuning."""
    from peft import get_peft_model

    from finetune.base_model import lora_config
    from finetune.config import FinetuneConfig
    from finetune.row_attention import restore_sdpa, supports_row_attention, use_row_attention

    # The run's LoRA (finetune/base_model.py), so the probe times the step the run takes.
    lora_model = get_peft_model(model, lora_config(FinetuneConfig()))
    flat = supports_row_attention(lora_model, TRAIN_TOKENS)
    batch, tokens = (_flat_step if flat else _packed_step)(task, tokenizer, fmt)
    batch = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in batch.items()}
    if flat:
        use_row_attention(lora_model)
    try:
        train = {"lora": _train_step_seconds(lora_model, batch) / tokens}
        if time.perf_counter() - started < PROBE_DEADLINE_S:
            full_model = lora_model.unload()  # the plain model again, every weight trainable
            for param in full_model.parameters():
                param.requires_grad_(True)
            train["full-ft"] = _train_step_seconds(full_model, batch) / tokens
        else:
            train["full-ft"] = train["lora"]
    finally:
        restore_sdpa(lora_model)
    return train


def _flat_step(task, tokenizer, fmt) -> tuple[dict, int]:
    """A training step as the trainer lays one out on a CPU: the task's first rows (prompt and
    completion, about TRAIN_ROWS x TRAIN_TOKENS tokens) flattened, the prompt opening they
    share once, the loss on the completion tokens. Also returns the rows' own token count, the
    unit the plan multiplies by."""
    from finetune.batches import FlatBatchCollator

    examples, tokens = [], 0
    for row in task.train or task.eval:
        prompt = fmt.build([], row.messages).text
        ids = tokenizer(prompt + row.output + fmt.answer_end, add_special_tokens=False)
        ids = ids["input_ids"][:TRAIN_TOKENS]
        n_prompt = min(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), len(ids))
        examples.append({"input_ids": ids, "labels": [-100] * n_prompt + ids[n_prompt:]})
        tokens += len(ids)
        if tokens >= TRAIN_ROWS * TRAIN_TOKENS:
            break
    return FlatBatchCollator()(examples), tokens


def _packed_step(task, tokenizer, fmt) -> tuple[dict, int]:
    """TRAIN_ROWS sequences of TRAIN_TOKENS tokens of the task's rows end to end, the loss on
    one position in LOSS_EVERY (the layout where row attention does not apply, e.g. a GPU)."""
    import torch

    rows = task.train or task.eval
    text = "".join(fmt.build([], r.messages).text + r.output + fmt.answer_end for r in rows)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    rows = max(1, min(TRAIN_ROWS, len(ids) // TRAIN_TOKENS))
    width = min(TRAIN_TOKENS, len(ids))
    ids = ids[: rows * width].view(rows, width)
    labels = torch.full_like(ids, -100)
    labels[:, ::LOSS_EVERY] = ids[:, ::LOSS_EVERY]
    return {"input_ids": ids, "labels": labels}, ids.numel()


def _train_step_seconds(model, batch: dict) -> float:
    import torch

    from finetune.completion_loss import plain_causal_lm

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    base = plain_causal_lm(model)
    device = batch["input_ids"].device
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def step(inputs, labels):
        if base is None:
            loss = model(**inputs, labels=labels).loss
        else:  # as the trainer computes it: the LM head only where the loss is
            hidden = base.base_model(**inputs, use_cache=False).last_hidden_state[:, :-1]
            mask = labels[:, 1:] != -100
            logits = base.get_output_embeddings()(hidden[mask]).float()
            loss = logits.logsumexp(-1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm = batch["input_ids"][:1, :WARMUP_TOKENS]
    step({"input_ids": warm}, warm)
    # The faster of two steps: one step alone swung by 45% between probes on the 2-core machine.
    seconds = min(_timed(lambda: step(inputs, batch["labels"]), device) for _ in range(2))
    model.eval()
    return seconds


def _timed(fn, device) -> float:
    import torch

    cuda = getattr(device, "type", str(device)) == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _slice(batch, n: int) -> dict:
    return {k: v[:n] for k, v in batch.items()}


def _mtime(checkpoint: str) -> int:
    try:
        return int(Path(checkpoint).stat().st_mtime)
    except OSError:
        return 0
