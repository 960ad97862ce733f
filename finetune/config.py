"""Fine-tuning settings: documented defaults, overridable from the task YAML or the command line.

The task file's `finetune:` section sets any field for every fine-tuning method, and a nested
mapping named after a method overrides it for that method only:

    finetune:
      epochs: 2
      lora: {rank: 8}
      full-ft: {learning_rate: 2.0e-5}

Command-line overrides (`RunOptions.extra["finetune"]`) take the same shape and win over both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from advisor.memory import OPTIMIZERS
from experiments.errors import TaskError
from experiments.numbers import check_number

METHODS = ("lora", "qlora", "full-ft")
CHOICES = {
    "gradient_checkpointing": ("auto", "true", "false"),
    "optimizer": ("auto", *OPTIMIZERS),
    "fit": ("auto", "off"),
    "strategy": ("auto", "ddp", "fsdp"),
}
_YES_NO = {"yes": "true", "on": "true", "1": "true", "no": "false", "off": "false", "0": "false"}
_SYNONYMS = {
    "gradient_checkpointing": _YES_NO,
    "optimizer": {"adamw8bit": "adamw-8bit", "adamw_8bit": "adamw-8bit"},
    "fit": {"false": "off", "no": "off", "0": "off"},
    "strategy": {},
}


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run. Defaults suit a ~100M-parameter model and a few hundred
    short rows on a 2-core CPU (measured on the demo task; see docs/finetuning.md)."""

    method: str = "lora"
    # Optimisation. learning_rate None: 5e-4 for LoRA/QLoRA, 5e-5 for full fine-tuning. At 2e-4
    # LoRA learnt far slower than full-ft on the demo (validation loss 3.79 vs 1.25 after 4 steps).
    # One epoch: on 2 CPU cores a step of 4 x 256 packed tokens of the 135M model takes ~20-55 s,
    # so one epoch of the demo task (24k tokens, ~24 steps) is what the 20-minute budget allows.
    epochs: float = 1.0
    max_steps: int = 0  # > 0 caps the number of optimiser steps (tests, quick tries)
    learning_rate: float | None = None
    batch_size: int = 4  # packed sequences per step (each up to max_length tokens)
    max_length: int = 256  # tokens per packed sequence; longer rows are truncated (and counted)
    packing: bool = True  # best-fit-decreasing packing; False pads each batch to its longest row
    pad_to_multiple_of: int | None = None  # with packing off, 256 pads every row to 256 tokens
    # On a CPU, prompt tokens that open every row of a step (system turn, instruction) run once
    # per step instead of once per row; the loss and gradients are the same (docs/finetuning.md).
    share_prefix: bool = True
    warmup: float = 0.1  # fraction of the steps spent warming up the learning rate
    weight_decay: float = 0.0
    seed: int | None = None  # None: the run's --seed
    # Trainings per method (`run --seeds N` wins): seeds seed, seed+1, ...; each trains into its
    # own folder and is scored on the same eval rows (docs/finetuning.md, Seeds).
    seeds: int = 1
    # Validation and early stopping.
    val_fraction: float = 0.1  # of train, seeded; 0 trains on every row without early stopping
    # Each evaluation also saves a checkpoint (1.6 GB for full-ft with its optimizer state);
    # two per epoch keep the demo's five-method run inside 20 minutes on 2 cores.
    evals_per_epoch: int = 2
    patience: int = 2  # evaluations without a lower validation loss before stopping
    # Memory (docs/scale.md). "auto" (and 0 for the accumulation steps): the
    # fit chooses, before training, the fastest settings the memory estimator says fit the
    # device's free memory (advisor/fit.py); a value given here is kept as it is.
    gradient_checkpointing: str = "auto"  # auto | true | false
    gradient_accumulation_steps: int = 0  # 0: auto; else batch_size / this = the micro-batch
    optimizer: str = "auto"  # auto | adamw | adamw-8bit | paged-adamw-8bit
    fit: str = "auto"  # auto: choose settings and skip what cannot fit; off: run as set
    fit_memory_gb: float | None = None  # the memory the fit may use (None: free memory now)
    # Several processes (--devices N, torchrun, accelerate launch; docs/scale.md, Several GPUs):
    # ddp keeps a whole copy on each device, fsdp shards parameters, gradients and optimizer
    # state across them (FSDP2); auto: ddp when the fit finds settings that fit one device,
    # fsdp when none does. One process trains alone whatever this says (fsdp: one line).
    strategy: str = "auto"  # auto | ddp | fsdp
    cpu_offload: bool = False  # fsdp: the shards in host memory, the optimizer steps there
    # LoRA / QLoRA.
    rank: int = 16
    alpha: int = 32
    # 0: peft then skips the dropout layer; at 0.05 it cost ~9% of a CPU step (py-spy), and one
    # epoch over a few hundred rows has little to overfit.
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    # Raw-text rows mixed into training: a JSONL file of {"id", "text"} rows next to the task file
    # (what `adaptwise data from-repo` writes as raw.jsonl). The loss covers every token of them.
    raw_text: str | None = None
    # raft only: share of train rows whose passages include the one holding the answer (RAFT's P).
    raft_oracle_fraction: float = 0.8
    # Outputs and safety.
    merge: bool = False  # also save the LoRA-merged model (loadable without peft)
    resume: bool = True  # continue from the last checkpoint of an interrupted identical run
    keep_checkpoints: bool = False  # checkpoints only serve resuming; full-ft's are 1.6 GB each
    allow_leakage: bool = False  # train even when eval rows also appear in train
    allow_fallback: bool = False  # qlora: train plain LoRA where 4-bit is unsupported
    forgetting_probe: bool = True  # score the general-knowledge probe before and after

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.method == "full-ft" else 5e-4

    @property
    def uses_lora(self) -> bool:
        return self.method in ("lora", "qlora")

    def memory_settings(self) -> dict:
        """The memory settings given (None: the fit chooses), as advisor.fit takes them."""
        ckpt = None if self.gradient_checkpointing == "auto" else self.gradient_checkpointing
        return {
            "gradient_checkpointing": None if ckpt is None else ckpt == "true",
            "accumulation": self.gradient_accumulation_steps or None,
            "optimizer": None if self.optimizer == "auto" else self.optimizer,
            "strategy": None if self.strategy == "auto" else self.strategy,
            "cpu_offload": self.cpu_offload,
        }

    def fingerprint_fields(self) -> dict:
        """The settings that change what training produces (used to match checkpoints)."""
        skip = {
            "merge",
            "seeds",  # how many trainings, not what one of them produces
            "resume",
            "keep_checkpoints",
            "allow_leakage",
            "forgetting_probe",
            "share_prefix",  # how a step is computed, not what it computes
            # How memory is spent, not what is computed (up to float rounding); a resumed run
            # may pick other values when free memory differs.
            "gradient_checkpointing",
            "gradient_accumulation_steps",
            "fit",
            "fit_memory_gb",
            "strategy",  # how the work is spread, not what is computed (up to float rounding)
            "cpu_offload",
        }
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


_FIELDS = {f.name: f for f in fields(FinetuneConfig) if f.name != "method"}


def build_config(
    method: str, task_settings: dict, cli_settings: dict, seed: int, flag: str = "--finetune"
) -> FinetuneConfig:
    """Merge defaults, the task file's `finetune:` section and command-line overrides (given
    with `flag`: `run --finetune`, `finetune --set`)."""
    values: dict = {}
    for source, where in ((task_settings, "task file finetune:"), (cli_settings, flag)):
        values.update(_flat(source, method, where))
    config = FinetuneConfig(method=method)
    for key, value in values.items():
        setattr(config, key, _coerce(key, value))
    if config.seed is None:
        config.seed = seed
    _validate(config)
    return config


def _flat(settings: dict, method: str, where: str) -> dict:
    out = {}
    for key, value in (settings or {}).items():
        key = str(key).replace("-", "_") if key not in METHODS else key
        if key in METHODS:
            if not isinstance(value, dict):
                raise TaskError(f"{where} {key} must be a mapping of settings for that method")
            if key == method:
                nested = {str(k).replace("-", "_"): v for k, v in value.items()}
                out.update({k: v for k, v in nested.items()})
            continue
        out[key] = value
    for key in out:
        if key not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise TaskError(f"{where} unknown setting {key!r}; known settings: {known}")
    return out


def _coerce(key: str, value):
    default = getattr(FinetuneConfig, key, None)
    try:
        if key == "target_modules":
            if isinstance(value, str | list):
                return value
            raise TypeError
        if key == "raw_text":
            if value is None or (isinstance(value, str) and value.strip()):
                return value
            raise TypeError
        if (
            key in ("learning_rate", "seed", "pad_to_multiple_of", "fit_memory_gb")
            and value is None
        ):
            return None
        if key in CHOICES:
            word = str(value).strip().lower()
            if isinstance(value, bool):
                word = "true" if value else "false"
            word = _SYNONYMS[key].get(word, word)
            if word not in CHOICES[key]:
                raise TaskError(
                    f"finetune setting {key}: {value!r} is not one of {', '.join(CHOICES[key])}"
                )
            return word
        if key == "fit_memory_gb":
            return check_number(float(value), "finetune setting fit_memory_gb", above=True)
        if isinstance(default, bool):
            if isinstance(value, str):
                word = value.strip().lower()
                if word in ("1", "true", "yes", "on"):
                    return True
                if word in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, bool | int) and value in (0, 1):
                return bool(value)
            raise TypeError
        if key == "learning_rate" or isinstance(default, float):
            return check_number(float(value), f"finetune setting {key}", low=None)
        if isinstance(default, int) or key in ("seed", "pad_to_multiple_of"):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
    except (TypeError, ValueError):
        raise TaskError(f"finetune setting {key}: {value!r} is not a valid value") from None
    return value


def _validate(c: FinetuneConfig) -> None:
    checks = [
        (c.epochs > 0 or c.max_steps > 0, "epochs must be above 0"),
        (c.max_steps >= 0, "max_steps must be 0 (no cap) or more"),
        (c.seeds >= 1, "seeds must be at least 1"),
        (c.batch_size >= 1, "batch_size must be at least 1"),
        (c.max_length >= 16, "max_length must be at least 16 tokens"),
        (0.0 <= c.val_fraction < 0.5, "val_fraction must be in [0, 0.5)"),
        (c.lr > 0, "learning_rate must be above 0"),
        (c.rank >= 1 and c.alpha >= 1, "rank and alpha must be at least 1"),
        (0.0 <= c.dropout < 1.0, "dropout must be in [0, 1)"),
        (c.evals_per_epoch >= 1 and c.patience >= 1, "evals_per_epoch and patience must be >= 1"),
        (0.0 <= c.warmup < 1.0, "warmup must be a fraction in [0, 1)"),
        (0.0 <= c.raft_oracle_fraction <= 1.0, "raft_oracle_fraction must be in [0, 1]"),
        (
            c.gradient_accumulation_steps >= 0,
            "gradient_accumulation_steps must be 0 (auto) or more",
        ),
        (
            c.gradient_accumulation_steps == 0 or c.batch_size % c.gradient_accumulation_steps == 0,
            f"gradient_accumulation_steps ({c.gradient_accumulation_steps}) must divide "
            f"batch_size ({c.batch_size})",
        ),
        (c.fit_memory_gb is None or c.fit_memory_gb > 0, "fit_memory_gb must be above 0"),
        (
            not c.cpu_offload or c.strategy != "ddp",
            "cpu_offload is FSDP's; it needs strategy fsdp (or auto)",
        ),
        (
            not (c.method == "qlora" and c.strategy == "fsdp"),
            "qlora does not train under fsdp here: transformers' FSDP2 sharding at load time "
            "does not shard bitsandbytes' 4-bit weights (accelerate's FSDP plugin does, on CUDA "
            "GPUs with bnb_4bit_quant_storage=bfloat16); use strategy ddp, or lora with fsdp",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise TaskError(f"finetune setting for {c.method}: {message}")
