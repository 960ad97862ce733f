"""Train LoRA, QLoRA or every weight of a causal LM with TRL's SFTTrainer: the training run.

One code path for all three. LoRA trains its adapter on the run's own base model (one copy in
memory; the adapter is removed after scoring, see finetune/methods.py); QLoRA trains on a 4-bit
copy and full fine-tuning on a fresh copy in the run's precision (finetune/base_model.py). The
model is wrapped with a LoRA adapter unless every weight trains, and trained on
prompt/completion pairs packed best-fit-decreasing into sequences of `max_length` tokens, so a
CPU spends its time on real tokens rather than on padding. The memory settings (gradient
checkpointing, micro-batches with accumulation, the optimizer) come from the config, which the
fit has filled in; finetune/sft_trainer.py turns them into the SFTTrainer. Validation loss is
measured a few times per epoch; training stops when it stops improving, and the best checkpoint
is the one kept. An interrupted run resumes from its last checkpoint (finetune/checkpoints.py).
The same code runs in several processes (`--devices N`, torchrun, `accelerate launch`): DDP, or
a model sharded as it loaded (FSDP, finetune/sharding.py), which trains afresh rather than
resuming and whose full weights are gathered to the first process to be saved.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import OutOfMemory, is_out_of_memory
from experiments.peak_memory import PeakMemory
from experiments.progress_events import log_events
from finetune.base_model import add_adapter, count_parameters, is_4bit, load_model
from finetune.checkpoints import (
    RUN_FILE,
    checkpoint_step,
    corrupt_checkpoint,
    resume_point,
    run_fingerprint,
)
from finetune.config import FinetuneConfig
from finetune.curves import loss_points, write_loss_csv, write_loss_png
from finetune.data import count_too_long, raw_examples, to_examples
from finetune.saving import save_dir, save_merged, save_trained
from finetune.sft_trainer import (
    end_training,
    make_trainer,
    optimizer_class,
    optimizer_name,
    step_callback,
    steps_per_epoch_real,
)
from finetune.sharding import is_sharded, record


@dataclass
class TrainResult:
    """The trained model, ready for inference, and what training cost."""

    model: object  # the PEFT model (adapter on its base) for LoRA/QLoRA; eval mode
    stats: dict = field(default_factory=dict)
    folder: Path | None = None


@dataclass(frozen=True)
class _How:
    """How one training runs and speaks: its name in log lines, the log, where its step events
    go, extra Trainer callbacks, the batch layout and the precision."""

    label: str
    log: object
    emit: object
    callbacks: tuple
    layout: str
    precision: str


@dataclass
class _Session:
    """What `_build` prepared for one training: the Trainer on its examples, and its counts."""

    trainer: object
    label: str
    train_examples: list
    val_examples: list
    raw_rows: int
    too_long: int
    trainable: int
    total: int
    sharded: bool
    resume_from: str | None
    ckpt_dir: Path


@dataclass
class _Fitted:
    """What `_fit` measured: the steps it ran from, its wall time and its peak memory."""

    start_step: int
    wall_s: float
    memory: PeakMemory


def train_model(
    checkpoint: str,
    tokenizer,
    prompt_format,
    train_rows: list,
    val_rows: list,
    config: FinetuneConfig,
    folder: Path,
    log=print,
    emit=None,
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
    `emit` takes each logged step's TrainingStep event (experiments/progress_events.py); without
    it, the step's line goes to `log`.
    `layout` "padded-rows" is the benchmark's padded baseline (see `make_trainer`).
    """
    rows = (train_rows, val_rows, list(raw_texts))
    emit = emit or log_events(log)
    how = _How(label or config.method, log, emit, tuple(callbacks), layout, precision)
    session = _build(checkpoint, tokenizer, prompt_format, rows, config, folder, model, how)
    fitted = _fit(session, config, log)
    trainer = session.trainer
    main = trainer.accelerator.is_main_process
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    saved, png = _save(session, model, tokenizer, config, folder, log)
    stats = {"training": _summary(session, fitted, config, precision, folder, saved, png)}
    if main:
        _write_json(folder / "training.json", stats["training"])
        if not config.keep_checkpoints:  # the best model is saved; training done
            shutil.rmtree(session.ckpt_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    del trainer, session
    return TrainResult(model=model, stats=stats, folder=folder)


def _build(checkpoint, tokenizer, prompt_format, rows, config, folder, model, how) -> _Session:
    """The examples (truncation counted), the resume point, the model (loaded when not given,
    with its adapter) and the Trainer over them; the checkpoint folder claimed for this run."""
    from transformers.trainer_utils import get_last_checkpoint

    train_rows, val_rows, raw_texts = rows
    label, log, precision = how.label, how.log, how.precision
    folder.mkdir(parents=True, exist_ok=True)
    train_examples = to_examples(train_rows, prompt_format) + raw_examples(raw_texts)
    val_examples = to_examples(val_rows, prompt_format)
    too_long = count_too_long(train_examples + val_examples, tokenizer, config.max_length)
    if too_long:
        log(
            f"{label}: {too_long} of {len(train_examples) + len(val_examples)} rows are "
            f"longer than max_length={config.max_length} tokens and were truncated "
            "(raise finetune max_length to keep them whole)"
        )
    ckpt_dir = folder / "checkpoints"
    fingerprint = run_fingerprint(checkpoint, config, train_rows, val_rows, raw_texts)
    resume_from = resume_point(ckpt_dir, fingerprint, config, log, get_last_checkpoint)
    if model is None:
        model = load_model(checkpoint, config, precision)
    sharded = is_sharded(model)
    if sharded and resume_from:
        log(
            f"{label}: not resuming from {Path(resume_from).name}: a model sharded as it "
            "loads (FSDP) trains afresh (transformers keeps no optimizer state for it)"
        )
        resume_from = None
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
        [step_callback(label, how.emit), *how.callbacks],
        layout=how.layout,
        precision=precision,
    )
    # Under `accelerate launch` every process runs this; only the main one writes.
    if trainer.accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / RUN_FILE).write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    return _Session(
        trainer,
        label,
        train_examples,
        val_examples,
        len(raw_texts),
        too_long,
        trainable,
        total,
        sharded,
        resume_from,
        ckpt_dir,
    )


def _fit(session: _Session, config: FinetuneConfig, log) -> _Fitted:
    """Train, from the resume point if any, measuring wall time and peak memory; running out of
    memory is one OutOfMemory line, and a checkpoint that cannot be resumed names itself."""
    import torch

    trainer, label, resume_from = session.trainer, session.label, session.resume_from
    rows = len(session.train_examples)
    log(
        f"{label}: training {session.trainable:,} of {session.total:,} parameters on "
        f"{rows} rows"
        + (f" ({session.raw_rows} of them raw text)" if session.raw_rows else "")
        + f" ({len(session.val_examples)} for validation), "
        f"~{steps_per_epoch_real(trainer)} steps per epoch"
    )
    start_step = 0
    if resume_from:
        start_step = checkpoint_step(resume_from)
        log(f"{label}: resuming from {Path(resume_from).name}")
    with PeakMemory() as memory:
        started = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=resume_from)
        except torch.OutOfMemoryError:
            raise _oom(config, trainer) from None
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise _oom(config, trainer) from None
            if resume_from:
                raise corrupt_checkpoint(resume_from, exc) from None
            raise
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            if resume_from:
                raise corrupt_checkpoint(resume_from, exc) from None
            raise
        finally:
            end_training(trainer.model)
        wall = time.perf_counter() - started
    return _Fitted(start_step, wall, memory)


def _save(session: _Session, model, tokenizer, config: FinetuneConfig, folder: Path, log):
    """The loss curve (CSV and PNG), the trained weights and, with `merge`, the merged model;
    (what save_trained wrote, whether the PNG was)."""
    trainer, label, sharded = session.trainer, session.label, session.sharded
    main = trainer.accelerator.is_main_process
    points = loss_points(trainer.state.log_history)
    png = False
    if main:
        write_loss_csv(points, folder / "loss.csv")
        png = write_loss_png(points, folder / "loss.png", f"{label} loss", _best_step(trainer))
    saved = save_trained(model, tokenizer, config, folder, write=main, sharded=sharded)
    # A sharded (FSDP) adapter is merged once it is loaded whole (finetune/methods.py).
    if config.merge and is_4bit(model):
        log(
            f"{label}: merge skipped: the base is 4-bit; load the adapter onto the "
            "float base model and merge there to get a plain model"
        )
    elif config.merge and config.uses_lora and main and not sharded:
        # Written from the adapter's deltas: the base in memory (the run's shared copy) is
        # never merged into.
        save_dir(folder / "merged", lambda d: save_merged(model, tokenizer, d))
        saved["merged"] = str(folder / "merged")
    return saved, png


def _best_step(trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return checkpoint_step(best) if best else None


def _summary(
    session: _Session, fitted: _Fitted, config, precision: str, folder: Path, saved: dict, png
) -> dict:
    """training.json: what was trained on, how far, how fast, in how much memory, the losses,
    the settings and where the outputs are."""
    trainer = session.trainer
    state = trainer.state
    dataset = trainer.train_dataset
    tokens_per_epoch = sum(len(ids) for ids in dataset["input_ids"])
    loss_tokens_per_epoch = (
        sum(sum(1 for t in labels if t != -100) for labels in dataset["labels"])
        if "labels" in dataset.column_names
        else None
    )
    steps_run = max(state.global_step - fitted.start_step, 0)
    tokens_run = round(tokens_per_epoch * steps_run / max(steps_per_epoch_real(trainer), 1))
    points = loss_points(state.log_history)
    val_losses = [p["val_loss"] for p in points if "val_loss" in p]
    train_losses = [p["train_loss"] for p in points if "train_loss" in p]
    wall = fitted.wall_s
    trainable, total = session.trainable, session.total
    return {
        "method": config.method,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / max(total, 1), 3),
        "train_rows": len(session.train_examples),
        "raw_text_rows": session.raw_rows,
        "val_rows": len(session.val_examples),
        "rows_truncated": session.too_long,
        "epochs": round(float(state.epoch or 0), 3),
        "steps": state.global_step,
        "steps_this_run": steps_run,
        "resumed_from_step": fitted.start_step or None,
        "stopped_early": bool(
            session.val_examples and state.global_step < state.max_steps and not config.max_steps
        ),
        "best_step": _best_step(trainer),
        "train_tokens_per_epoch": tokens_per_epoch,
        "loss_tokens_per_epoch": loss_tokens_per_epoch,
        "train_tokens": tokens_run,
        "train_wall_s": round(wall, 2),
        "s_per_step": round(wall / steps_run, 3) if steps_run else None,
        "tokens_per_s": round(tokens_run / wall, 1) if wall > 0 and steps_run else None,
        "peak_memory_mb": fitted.memory.peak_mb,
        "peak_memory_kind": fitted.memory.kind,
        "first_train_loss": train_losses[0] if train_losses else None,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "best_val_loss": min(val_losses) if val_losses else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
        "settings": config.fingerprint_fields(),
        "precision": precision,
        "distributed": record(config),
        "memory_settings": {
            "gradient_checkpointing": config.gradient_checkpointing == "true",
            "micro_batch": trainer.args.per_device_train_batch_size,
            "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
            "optimizer": optimizer_name(config),
            "optimizer_class": optimizer_class(trainer.optimizer),
        },
        "loss_csv": str(folder / "loss.csv"),
        "loss_png": str(folder / "loss.png") if png else None,
        **saved,
    }


def _oom(config: FinetuneConfig, trainer) -> OutOfMemory:
    from advisor.fit_suggestions import after_out_of_memory

    settings = {
        "gradient_checkpointing": config.gradient_checkpointing == "true",
        "micro_batch": trainer.args.per_device_train_batch_size,
        "seq": config.max_length,
    }
    advice = after_out_of_memory(config.method, settings)
    return OutOfMemory(f"out of memory while training {config.method}; {advice}")


def _write_json(path: Path, data: dict) -> None:
    from experiments.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
