"""The model fine-tuning trains: a fresh copy of the base in the run's precision (or 4-bit), the
LoRA adapter it is wrapped in, and how many of its parameters train."""

from __future__ import annotations

from experiments.errors import AdaptwiseError
from finetune.config import FinetuneConfig


def load_model(
    checkpoint: str,
    config: FinetuneConfig,
    precision: str = "fp32",
    quantization=None,
    distributed_config=None,
):
    """A fresh copy of the base model in `precision` (fp32 master weights for fp16 full
    fine-tuning; a 4-bit NF4 base when `quantization` is given; sharded across the run's
    processes as it loads with a transformers `distributed_config`, finetune/sharding.py)."""
    from transformers import AutoModelForCausalLM

    from experiments.precision import weights_dtype

    kwargs = {"dtype": weights_dtype(precision, trains_every_weight=config.method == "full-ft")}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if distributed_config is not None:
        kwargs["distributed_config"] = distributed_config
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


def is_4bit(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False)) or any(
        p.__class__.__name__ == "Params4bit" for p in model.parameters()
    )
