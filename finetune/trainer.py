"""Train LoRA, QLoRA or every weight of a causal LM with TRL's SFTTrainer.

One code path for all three. LoRA trains its adapter on the run's own base model (one copy in
memory; the adapter is removed after scoring, see finetune/methods.py); QLoRA trains on a 4-bit
copy and full fine-tuning on a fresh copy in the run's precision. The model is wrapped with a
LoRA adapter unless every weight trains, and trained on prompt/completion pairs packed
best-fit-decreasing into sequences of `max_length` tokens, so a CPU spends its time on real
tokens rather than on padding. The memory settings (gradient checkpointing, micro-batches with
accumulation, the optimizer) come from the config, which the fit has filled in. Validation loss
is measured a few times per epoch; training stops when it stops improving, and the best
checkpoint is the one kept. The same code runs under `accelerate launch` on several GPUs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import AdaptwiseError, OutOfMemory, TaskError, is_out_of_memory
from experiments.memory import PeakMemory
from experiments.precision import trainer_flags
from finetune.batches import FlatBatchCollator, PackedBatchCollator, PaddedRowsCollator
from finetune.completion_loss import completion_loss_trainer_class
from finetune.config import FinetuneConfig
from finetune.curves import loss_points, write_loss_csv, write_loss_png
from finetune.data import count_too_long, raw_examples, to_examples
from finetune.row_attention import restore_sdpa, supports_row_attention, use_row_attention
from finetune.saving import save_dir, save_merged, save_trained

RUN_FILE = "run.json"  # in the checkpoints folder: what the checkpoints were trained with


# The optimizer names of `finetune optimizer:` as transformers' TrainingArguments call them.
OPTIM_NAMES = {
    "adamw": "adamw_torch",
    "adamw-8bit": "adamw_8bit",
    "paged-adamw-8bit": "paged_adamw_8bit",
}


@dataclass
class TrainResult:
    """The trained model, ready for inference, and what training cost."""

    model: object  # the PEFT model (adapter on its base) for LoRA/QLoRA; eval mode
    stats: dict = field(default_factory=dict)
    folder: Path | None = None


def load_model(checkpoint: str, config: FinetuneConfig, precision: str = "fp32", quantization=None):
    """A fresh copy of the base model in `precision` (fp32 master weights for fp16 full
    fine-tuning; a 4-bit NF4 base when `quantization` is given)."""
    from transformers import AutoModelForCausalLM

    from experiments.precision import weights_dtype

    kwargs = {"dtype": weights_dtype(precision, trains_every_weight=config.method == "full-ft")}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    try:
        return AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdaptwiseError(f"could not load base model {checkpoint}: {first}") from None


def add_adapter(model, config: FinetuneConfig):
    """`model` wrapped with a fresh LoRA adapter, initialised from the run's seed: peft draws
    lora_A from torch's global generator, which each process seeds at random, so two identical
    runs trained different adapters (lora_B starts at zero, so their first losses agreed)."""
    from peft import get_peft_model
    from transformers import set_seed

    set_seed(config.seed)
    return get_peft_model(model, lora_config(config))


def lora_config(config: FinetuneConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count as their unpacked number."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored uint8
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def train_model(
    checkpoint: str,
    tokenizer,
    prompt_format,
    train_rows: list,
    val_rows: list,
    config: FinetuneConfig,
    folder: Path,
    log=print,
    model=None,
    callbacks=(),
    raw_texts: list[str] = (),
    label: str | None = None,
    layout: str = "packed",
    precision: str = "fp32",
) -> TrainResult:
    """Train on `train_rows`, validate on `val_rows`, save into `folder`; see module docstring.

    `model` may be passed already loaded (the run's shared base for LoRA, QLoRA's 4-bit base);
    otherwise a fresh copy in `precision` is loaded from `checkpoint`. `raw_texts` train with
    the loss on every token, mixed into the same packed batches as the prompt/completion rows
    (never validated on).
    `label` names the run's method in log lines (e.g. `raft`, which trains as `lora`).
    `layout` "padded-rows" is the benchmark's padded baseline (see `make_trainer`).
    """
    label = label or config.method
    import torch
    from transformers.trainer_utils import get_last_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    train_examples = to_examples(train_rows, prompt_format) + raw_examples(list(raw_texts))
    val_examples = to_examples(val_rows, prompt_format)
    too_long = count_too_long(train_examples + val_examples, tokenizer, config.max_length)
    if too_long:
        log(
            f"{label}: {too_long} of {len(train_examples) + len(val_examples)} rows are "
            f"longer than max_length={config.max_length} tokens and were truncated "
            "(raise finetune max_length to keep them whole)"
        )

    ckpt_dir = folder / "checkpoints"
    fingerprint = _fingerprint(checkpoint, config, train_rows, val_rows, raw_texts)
    resume_from = _resume_point(ckpt_dir, fingerprint, config, log, get_last_checkpoint)

    if model is None:
        model = load_model(checkpoint, config, precision)
    if config.uses_lora and not hasattr(model, "peft_config"):
        model = add_adapter(model, config)
    trainable, total = count_parameters(model)

    trainer = make_trainer(
        model,
        tokenizer,
        train_examples,
        val_examples,
        config,
        ckpt_dir,
        [log_callback(label, log), *callbacks],
        layout=layout,
        precision=precision,
    )
    steps_per_epoch = steps_per_epoch_real(trainer)
    has_val = bool(val_examples)
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    loss_tokens_per_epoch = (
        sum(sum(1 for t in labels if t != -100) for labels in trainer.train_dataset["labels"])
        if "labels" in trainer.train_dataset.column_names
        else None
    )
    # Under `accelerate launch` every process runs this function; only the main one writes.
    main = trainer.accelerator.is_main_process
    if main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / RUN_FILE).write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")

    log(
        f"{label}: training {trainable:,} of {total:,} parameters on "
        f"{len(train_examples)} rows"
        + (f" ({len(raw_texts)} of them raw text)" if raw_texts else "")
        + f" ({len(val_examples)} for validation), "
        f"~{steps_per_epoch} steps per epoch"
    )
    start_step = 0
    if resume_from:
        start_step = _checkpoint_step(resume_from)
        log(f"{label}: resuming from {Path(resume_from).name}")
    with PeakMemory() as memory:
        started = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=resume_from)
        except torch.OutOfMemoryError:
            raise _oom(config) from None
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise _oom(config) from None
            if resume_from:
                raise _corrupt(resume_from, exc) from None
            raise
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            if resume_from:
                raise _corrupt(resume_from, exc) from None
            raise
        finally:
            end_training(trainer.model)
        wall = time.perf_counter() - started

    state = trainer.state
    steps_run = max(state.global_step - start_step, 0)
    tokens_run = round(tokens_per_epoch * steps_run / max(steps_per_epoch_real(trainer), 1))
    points = loss_points(state.log_history)
    best_step = (
        _checkpoint_step(state.best_model_checkpoint) if state.best_model_checkpoint else None
    )
    png = False
    if main:
        write_loss_csv(points, folder / "loss.csv")
        png = write_loss_png(points, folder / "loss.png", f"{label} loss", best_step)

    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    saved = save_trained(model, tokenizer, config, folder, write=main)
    if config.merge and _is_4bit(model):
        log(
            f"{label}: merge skipped: the base is 4-bit; load the adapter onto the "
            "float base model and merge there to get a plain model"
        )
    elif config.merge and config.uses_lora and main:
        # Written from the adapter's deltas: the base in memory (the run's shared copy) is
        # never merged into.
        save_dir(folder / "merged", lambda d: save_merged(model, tokenizer, d))
        saved["merged"] = str(folder / "merged")
    val_losses = [p["val_loss"] for p in points if "val_loss" in p]
    train_losses = [p["train_loss"] for p in points if "train_loss" in p]
    stats = {
        "training": {
            "method": config.method,
            "trainable_params": trainable,
            "total_params": total,
            "trainable_percent": round(100 * trainable / max(total, 1), 3),
            "train_rows": len(train_examples),
            "raw_text_rows": len(raw_texts),
            "val_rows": len(val_examples),
            "rows_truncated": too_long,
            "epochs": round(float(state.epoch or 0), 3),
            "steps": state.global_step,
            "steps_this_run": steps_run,
            "resumed_from_step": start_step or None,
            "stopped_early": bool(
                has_val and state.global_step < state.max_steps and not config.max_steps
            ),
            "best_step": best_step,
            "train_tokens_per_epoch": tokens_per_epoch,
            "loss_tokens_per_epoch": loss_tokens_per_epoch,
            "train_tokens": tokens_run,
            "train_wall_s": round(wall, 2),
            "s_per_step": round(wall / steps_run, 3) if steps_run else None,
            "tokens_per_s": round(tokens_run / wall, 1) if wall > 0 and steps_run else None,
            "peak_memory_mb": memory.peak_mb,
            "peak_memory_kind": memory.kind,
            "first_train_loss": train_losses[0] if train_losses else None,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "best_val_loss": min(val_losses) if val_losses else None,
            "final_val_loss": val_losses[-1] if val_losses else None,
            "settings": config.fingerprint_fields(),
            "precision": precision,
            "memory_settings": {
                "gradient_checkpointing": config.gradient_checkpointing == "true",
                "micro_batch": trainer.args.per_device_train_batch_size,
                "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
                "optimizer": _optimizer(config),
                "optimizer_class": optimizer_class(trainer.optimizer),
            },
            "loss_csv": str(folder / "loss.csv"),
            "loss_png": str(folder / "loss.png") if png else None,
            **saved,
        }
    }
    if main:
        _write_json(folder / "training.json", stats["training"])
        if not config.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # the best model is saved; training done
    trainer.accelerator.wait_for_everyone()
    del trainer
    return TrainResult(model=model, stats=stats, folder=folder)


def make_trainer(
    model,
    tokenizer,
    train_examples: list[dict],
    val_examples: list[dict],
    config,
    ckpt_dir,
    callbacks=(),
    layout: str = "packed",
    precision: str = "fp32",
):
    """The SFTTrainer for prompt/completion examples: completion-only loss, packed batches,
    validation a few times per epoch, early stopping and the best checkpoint kept.

    `layout` "padded-rows" trains on the same steps with every row padded to max_length (the
    benchmark's baseline; see finetune/batches.py)."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    # Raised inside transformers/TRL, not by anything a user can change.
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    steps_per_epoch = _estimate_steps(train_examples, tokenizer, config)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    has_val = bool(val_examples)
    accumulation = config.gradient_accumulation_steps or 1
    micro_batch = config.batch_size // accumulation
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        # Random batches, not transformers' length-grouped sampler: grouping cut an epoch's
        # token slots by 6.6% on the demo task, but lowered accuracy after one epoch (lora
        # 0.375 -> 0.312, qlora 0.450 -> 0.350, full-ft 0.500 -> 0.438).
        learning_rate=config.lr,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        packing=config.packing,
        packing_strategy="bfd",
        pad_to_multiple_of=config.pad_to_multiple_of,
        completion_only_loss=True,
        # Recomputes each layer in the backward pass; non-reentrant, so a frozen base needs no
        # input-gradient hook.
        activation_checkpointing=config.gradient_checkpointing == "true",
        activation_checkpointing_kwargs={"use_reentrant": False},
        optim=OPTIM_NAMES[_optimizer(config)],
        **trainer_flags(precision),
        logging_steps=max(1, steps_per_epoch // 10),  # the train-loss curve; logging is cheap
        eval_strategy="steps" if has_val else "no",
        eval_steps=eval_every,
        save_strategy="steps",
        save_steps=eval_every,
        save_total_limit=2,  # the best and the last: enough to resume and to keep the best
        load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Several processes without a GPU (torch.distributed.run on CPUs): accelerate only
        # sets up gloo data parallelism when told the run is on CPU; otherwise every process
        # would train alone on all the data. bf16 on a CPU (autocast) also needs to be told.
        use_cpu=not torch.cuda.is_available()
        and (int(os.environ.get("WORLD_SIZE", "1")) > 1 or precision == "bf16"),
        prediction_loss_only=True,  # otherwise TRL runs a second forward per eval batch for logits
    )
    if has_val:
        callbacks = [EarlyStoppingCallback(early_stopping_patience=config.patience), *callbacks]
    trainer = completion_loss_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_examples),
        eval_dataset=Dataset.from_list(val_examples) if has_val else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # it prints dicts; LogCallback says it in a line
    if layout == "padded-rows":
        if not config.packing:
            raise ValueError("layout 'padded-rows' unpacks packed sequences; it needs packing on")
        trainer.data_collator = PaddedRowsCollator(tokenizer.pad_token_id, config.max_length)
    elif config.packing and supports_row_attention(model, config.max_length):
        # One flattened sequence per step, no padding, attention within each row.
        use_row_attention(model)
        trainer.data_collator = FlatBatchCollator(share_prefix=config.share_prefix)
    elif config.packing and not _varlen_attention(model):
        # TRL's padding-free collator flattens the batch into one sequence: right for varlen
        # kernels, but SDPA/eager attention then spans the whole step (measured on 2 CPU cores,
        # LoRA forward and backward, 4 x 256 tokens: 5.7 s flattened, 5.5 s one forward per
        # packed sequence, 3.9 s one batched forward with a block mask per sequence).
        trainer.data_collator = PackedBatchCollator(tokenizer.pad_token_id)
    return trainer


def optimizer_class(optimizer) -> str | None:
    """The optimizer that trained, as "module.Class" with bitsandbytes' state width
    ("bitsandbytes.optim.adamw.AdamW (8-bit)")."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    if optimizer is None:
        return None
    name = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    bits = getattr(getattr(optimizer, "args", None), "optim_bits", None)
    return f"{name} ({bits}-bit)" if bits else name


def _optimizer(config: FinetuneConfig) -> str:
    return "adamw" if config.optimizer == "auto" else config.optimizer


def end_training(model) -> None:
    """Undo what training switched on in the model, so that it scores (and, for the run's
    shared base, serves the next method) as it did before: row attention back to SDPA,
    activation checkpointing off, eval mode."""
    restore_sdpa(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "is_activation_checkpointing", False):
        base.activation_checkpointing_disable()
    model.eval()


def _varlen_attention(model) -> bool:
    """Whether the model attends with a flash (varlen) kernel, which takes TRL's flattened
    padding-free batches as they are."""
    config = getattr(model, "config", None)
    return "flash" in str(getattr(config, "_attn_implementation", "") or "")


def log_callback(method: str, log):
    """A callback that reports each logged train loss and each validation in one line each
    (the TUI's run screen parses these lines)."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                log(
                    f"{method}: step {state.global_step}/{state.max_steps} "
                    f"train loss {logs['loss']:.4f}"
                )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics:
                log(
                    f"{method}: step {state.global_step}/{state.max_steps} "
                    f"validation loss {metrics['eval_loss']:.4f}"
                )

    return LogCallback()


def steps_per_epoch_real(trainer) -> int:
    """Optimiser steps in one epoch of the trainer's (packed) train set."""
    n = len(trainer.train_dataset)
    per_step = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    return max(1, math.ceil(n / per_step / max(trainer.args.world_size, 1)))


def _estimate_steps(examples: list[dict], tokenizer, config: FinetuneConfig) -> int:
    texts = [e["prompt"] + e["completion"] for e in examples]
    lengths = [
        min(len(ids), config.max_length)
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
    ]
    if config.packing:
        sequences = max(1, math.ceil(sum(lengths) / config.max_length))
    else:
        sequences = len(lengths)
    return max(1, math.ceil(sequences / config.batch_size))


def _fingerprint(checkpoint: str, config: FinetuneConfig, train_rows, val_rows, raw_texts) -> str:
    digest = hashlib.sha256()
    payload = {
        "base": str(checkpoint),
        "config": config.fingerprint_fields(),
        "train": [[r.id, list(r.messages), r.output] for r in train_rows],
        "val": [r.id for r in val_rows],
        "raw": hashlib.sha256("\x00".join(raw_texts).encode()).hexdigest(),
    }
    digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _resume_point(ckpt_dir: Path, fingerprint: str, config, log, get_last_checkpoint):
    """The last checkpoint of an interrupted run with the same settings and data, or None.

    Checkpoints of a different run are training scratch: they are removed before training.
    """
    if not ckpt_dir.is_dir():
        return None
    try:
        previous = json.loads((ckpt_dir / RUN_FILE).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    last = get_last_checkpoint(str(ckpt_dir)) if previous == fingerprint else None
    if config.resume and last:
        _check_checkpoint(Path(last))
        return last
    if any(ckpt_dir.iterdir()):
        log(f"{config.method}: starting afresh; removing checkpoints of an earlier run")
    shutil.rmtree(ckpt_dir)
    return None


def _check_checkpoint(path: Path) -> None:
    weights = [
        "adapter_model.safetensors",
        "model.safetensors",
        "pytorch_model.bin",
        "adapter_model.bin",
        "model.safetensors.index.json",
    ]
    if not (path / "trainer_state.json").is_file() or not any(
        (path / w).is_file() for w in weights
    ):
        raise _corrupt(str(path), "trainer_state.json or the weights are missing")
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _corrupt(str(path), exc) from None


def _corrupt(path: str, exc) -> TaskError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TaskError(
        f"checkpoint {path} is missing or corrupt ({detail[:160]}); delete that folder, or set "
        "finetune resume: false to train from the start"
    )


def _oom(config: FinetuneConfig) -> OutOfMemory:
    return OutOfMemory(
        f"out of memory while training {config.method}; lower finetune batch_size "
        f"(now {config.batch_size}) or max_length (now {config.max_length})"
        + (", or use lora/qlora instead of full-ft" if config.method == "full-ft" else "")
    )


def _checkpoint_step(path: str | None) -> int:
    if not path:
        return 0
    try:
        return int(Path(path).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _is_4bit(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False)) or any(
        p.__class__.__name__ == "Params4bit" for p in model.parameters()
    )


def _write_json(path: Path, data: dict) -> None:
    from experiments.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
