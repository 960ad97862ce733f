"""TRL's SFTTrainer as fine-tuning builds it: the training arguments from the config (batches,
accumulation, the optimizer, validation and checkpoints a few times per epoch, early stopping),
the batch collator for the packing layout, the training-step callback, and undoing afterwards what
training switched on in the model."""

from __future__ import annotations

import math
import warnings

from experiments.distributed import world_size
from experiments.precision import trainer_flags
from finetune.batches import FlatBatchCollator, PackedBatchCollator, PaddedRowsCollator
from finetune.completion_loss import completion_loss_trainer_class
from finetune.config import FinetuneConfig
from finetune.row_attention import restore_sdpa, supports_row_attention, use_row_attention
from finetune.sharding import is_sharded

# The optimizer names of `finetune optimizer:` as transformers' TrainingArguments call them.
OPTIM_NAMES = {
    "adamw": "adamw_torch",
    "adamw-8bit": "adamw_8bit",
    "paged-adamw-8bit": "paged_adamw_8bit",
}


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
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    # Raised inside transformers/TRL, not by anything a user can change.
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    has_val = bool(val_examples)
    steps_per_epoch = _estimate_steps(train_examples, tokenizer, config)
    args = _sft_config(model, config, ckpt_dir, steps_per_epoch, has_val, precision)
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
    trainer.data_collator = _collator(model, tokenizer, config, layout, trainer.data_collator)
    return trainer


def _sft_config(model, config, ckpt_dir, steps_per_epoch: int, has_val: bool, precision: str):
    """TRL's SFTConfig for `config`: the step's batch split over processes and accumulation,
    validation and checkpoints a few times per epoch, the best model kept."""
    import torch
    from trl import SFTConfig

    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    accumulation = config.gradient_accumulation_steps or 1
    # batch_size is the step's batch over every process: each takes its share of it.
    micro_batch = max(1, config.batch_size // world_size() // accumulation)
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
        optim=OPTIM_NAMES[optimizer_name(config)],
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
        use_cpu=not torch.cuda.is_available() and (world_size() > 1 or precision == "bf16"),
        prediction_loss_only=True,  # otherwise TRL runs a second forward per eval batch for logits
        # A model sharded as it loaded (FSDP) checkpoints its weights only: transformers does
        # not resume it (finetune/trainer.py starts it afresh).
        save_only_model=is_sharded(model),
    )
    return args


def _collator(model, tokenizer, config, layout: str, default):
    """How a step's rows become the model's input (`default`: TRL's own collator)."""
    if layout == "padded-rows":
        if not config.packing:
            raise ValueError("layout 'padded-rows' unpacks packed sequences; it needs packing on")
        return PaddedRowsCollator(tokenizer.pad_token_id, config.max_length)
    elif config.packing and supports_row_attention(model, config.max_length):
        # One flattened sequence per step, no padding, attention within each row.
        use_row_attention(model)
        return FlatBatchCollator(share_prefix=config.share_prefix)
    elif config.packing and not _varlen_attention(model):
        # TRL's padding-free collator flattens the batch into one sequence: right for varlen
        # kernels, but SDPA/eager attention then spans the whole step (measured on 2 CPU cores,
        # LoRA forward and backward, 4 x 256 tokens: 5.7 s flattened, 5.5 s one forward per
        # packed sequence, 3.9 s one batched forward with a block mask per sequence).
        return PackedBatchCollator(tokenizer.pad_token_id)
    return default


def optimizer_class(optimizer) -> str | None:
    """The optimizer that trained, as "module.Class" with bitsandbytes' state width
    ("bitsandbytes.optim.adamw.AdamW (8-bit)")."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    if optimizer is None:
        return None
    name = f"{type(optimizer).__module__}.{type(optimizer).__name__}"
    bits = getattr(getattr(optimizer, "args", None), "optim_bits", None)
    return f"{name} ({bits}-bit)" if bits else name


def optimizer_name(config: FinetuneConfig) -> str:
    return "adamw" if config.optimizer == "auto" else config.optimizer


def end_training(model) -> None:
    """Undo what training switched on in the model, so that it scores (and, for the run's
    shared base, serves the next method) as it did before: row attention back to SDPA,
    activation checkpointing off, eval mode; and let go of the model where bitsandbytes kept
    it (below)."""
    restore_sdpa(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "is_activation_checkpointing", False):
        base.activation_checkpointing_disable()
    model.eval()
    forget_optimizer_overrides()


def forget_optimizer_overrides() -> None:
    """With an 8-bit optimizer, transformers' Trainer registers every embedding module with
    bitsandbytes' GlobalOptimManager, a process-wide singleton, so that their states stay in 32
    bits. The singleton keeps those modules after training, and with them the model's weights
    (and the memory map of its checkpoint: an embedding loaded from safetensors is a view of
    it). Measured: after a full fine-tuning that ran out of memory, 513 MB of checkpoint map
    stayed mapped and the next method could not load its model under `ulimit -v`. The
    overrides only matter while the optimizer steps, so they are cleared when training ends."""
    import sys

    optim = sys.modules.get("bitsandbytes.optim")
    manager = getattr(optim, "GlobalOptimManager", None) if optim is not None else None
    if manager is not None and manager._instance is not None:
        manager._instance.initialize()


def _varlen_attention(model) -> bool:
    """Whether the model attends with a flash (varlen) kernel, which takes TRL's flattened
    padding-free batches as they are."""
    config = getattr(model, "config", None)
    return "flash" in str(getattr(config, "_attn_implementation", "") or "")


def step_callback(method: str, emit):
    """A callback that emits each logged train loss and each validation as a TrainingStep
    event (experiments/progress_events.py): the terminal prints its line, the TUI's run screen
    reads its fields."""
    from transformers import TrainerCallback

    from experiments.progress_events import TrainingStep

    class StepCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                emit(_step(state, "train", logs["loss"]))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics:
                emit(_step(state, "validation", metrics["eval_loss"]))

    def _step(state, split: str, loss) -> TrainingStep:
        return TrainingStep(method, state.global_step, state.max_steps, split, float(loss))

    return StepCallback()


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
