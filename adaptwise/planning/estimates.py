"""Each rung's estimates, by pure arithmetic on three inputs: the task's token counts
(`TaskStats`), the model's measured speed on this machine (`Rates`, from the short timing
probe in `adaptwise/planning/timing_probe.py`) and the run's settings (`RunSettings`): mean
prompt tokens, the seconds to prepare and to score a method, and the inference peak from the
memory estimator (`advisor/memory.py`). How each estimate is made is in docs/planning.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

from experiments.context import RunOptions
from experiments.prompting import EMBEDDING_SELECTORS
from experiments.run.registry import make_method
from finetune.config import FinetuneConfig
from rag.settings import RagSettings

# all-MiniLM-L6-v2 embeds about 34 short texts a second on the 2-core CI machine (measured by
# bench/bench_rag_index.py); loading it takes about 3 s there.
EMBED_TEXTS_PER_S = 34.0


EMBEDDER_LOAD_S = 3.0


EMBEDDER_GB = 0.35  # sentence-transformers and the embedding model in RAM


# QLoRA de-quantises each 4-bit projection in the forward and backward passes: bitsandbytes'
# kernels cost about 1.3x LoRA's step on a GPU (QLoRA paper, Dettmers et al. 2023, Table 9).
QLORA_SLOWDOWN = 1.3


# The forgetting probe: 32 multiple-choice questions, scored before and after training.
FORGETTING_TOKENS = 2 * 32 * 90


PASSAGE_OVERHEAD_TOKENS = 8  # numbering and separators per retrieved passage


@dataclass(frozen=True)
class TaskStats:
    """Token counts of the task as the model's tokenizer sees them (means per row)."""

    name: str
    kind: str
    n_train: int
    n_eval: int  # rows the run scores
    n_labels: int
    prompt_tokens: float  # the zero-shot prompt
    example_tokens: float  # one train row shown as a few-shot example (question and answer)
    answer_tokens: float  # a gold answer
    label_tokens: float  # a label plus the end-of-turn text
    train_tokens: int  # every train row as prompt + completion, summed
    corpus_tokens: int = 0
    max_new_tokens: int = 20


@dataclass(frozen=True)
class Rates:
    """The model's speed on this machine, from the timing probe."""

    model: str
    machine: str  # Machine.key()
    device: str
    forward_s_per_token: float  # a prompt's forward pass, per token
    decode_s_per_step: float  # one generation step for a batch of `decode_batch` rows
    decode_batch: int
    train_s_per_token: dict[str, float]  # "lora", "full-ft": forward + backward + AdamW step
    load_s: float  # loading the model from its checkpoint
    probe_s: float  # how long the probe took
    measured_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunSettings:
    """The run's settings that change time and memory, in the run's own option types (so each
    default lives once, in RunOptions, FinetuneConfig and RagSettings)."""

    k: int = RunOptions.k
    batch_size: int = RunOptions.batch_size  # generation batch
    precision: str = "fp32"  # resolved: bf16 | fp16 | fp32 (experiments/precision.py)
    # Devices one training may use (plan --devices, the answers' GPUs).
    devices: int = 1
    # Each fine-tuning method's config as the run builds it (finetune/config.py build_config:
    # the task file's finetune: section, its per-method mappings, the --finetune overrides);
    # a method missing here has the defaults.
    finetune: dict = field(default_factory=dict)
    rag: RagSettings = field(default_factory=RagSettings)

    def finetune_config(self, method: str) -> FinetuneConfig:
        return self.finetune.get(method) or FinetuneConfig(method=method)


@functools.lru_cache(maxsize=256)
def _built(method: str, k: int):
    return make_method(method, {"k": k})


def built(method: str, settings: RunSettings):
    """The method as the run builds it (experiments/run/registry.py, not prepared): what it
    trains, whether it retrieves and how it picks examples come from the one reading of a
    method's name, the run's."""
    return _built(method, settings.k)


def uses_embedder(method: str, settings: RunSettings) -> bool:
    """Whether it loads the embedding model: to pick examples, or to retrieve passages."""
    made = built(method, settings)
    return made.retrieves or made.selector_name in EMBEDDING_SELECTORS


def prompt_tokens(method: str, stats: TaskStats, settings: RunSettings) -> float:
    """Mean prompt tokens of `method` on the task."""
    made = built(method, settings)
    if made.retrieves:
        rag = settings.rag
        passage = rag.chunk_tokens + PASSAGE_OVERHEAD_TOKENS
        shots = rag.shots * (passage + stats.example_tokens)
        return stats.prompt_tokens + rag.k * passage + shots
    if made.selector_name:
        return stats.prompt_tokens + made.k * stats.example_tokens
    return stats.prompt_tokens


def score_seconds(method: str, stats: TaskStats, rates: Rates, settings: RunSettings) -> float:
    """Scoring the eval rows: prompt forward passes, plus label continuations (classification)
    or generation steps shared by a batch (qa, generation)."""
    tokens = prompt_tokens(method, stats, settings)
    seeds = seed_count(method, settings)  # each seed's model scores every eval row
    if stats.kind == "classification":
        per_row = (tokens + stats.n_labels * stats.label_tokens) * rates.forward_s_per_token
        return stats.n_eval * per_row * seeds
    batch = max(1, min(settings.batch_size, stats.n_eval))
    batches = math.ceil(stats.n_eval / batch)
    steps = stats.max_new_tokens
    decode = rates.decode_s_per_step * max(1.0, batch / max(rates.decode_batch, 1)) ** 0.5
    return (stats.n_eval * tokens * rates.forward_s_per_token + batches * steps * decode) * seeds


def seed_count(method: str, settings: RunSettings) -> int:
    """How many times the method trains and scores: its config's seeds (`run --seeds`, the
    task file's `finetune: seeds:`) for a fine-tuning method or hybrid, else once."""
    tuned = built(method, settings).trains
    return settings.finetune_config(tuned).seeds if tuned else 1


def prepare_seconds(method: str, stats: TaskStats, rates: Rates, settings: RunSettings) -> float:
    """Preparing the method before it scores: embedding, indexing, training."""
    made = built(method, settings)
    total = 0.0
    if made.selector_name in EMBEDDING_SELECTORS:
        total += EMBEDDER_LOAD_S + stats.n_train / EMBED_TEXTS_PER_S
    if made.retrieves:
        step = max(settings.rag.chunk_tokens - settings.rag.overlap_tokens, 1)
        chunks = math.ceil(stats.corpus_tokens / step) if stats.corpus_tokens else 0
        total += EMBEDDER_LOAD_S + (chunks + stats.n_train) / EMBED_TEXTS_PER_S
    tuned = made.trains
    if tuned:
        total += training_seconds(tuned, stats, rates, settings) * seed_count(method, settings)
    return total


def training_seconds(method: str, stats: TaskStats, rates: Rates, settings: RunSettings) -> float:
    """Load a fresh copy, train (tokens x measured s/token), validate, and run the forgetting
    probe before and after."""
    per_token = rates.train_s_per_token.get("full-ft" if method == "full-ft" else "lora")
    if per_token is None:
        per_token = rates.train_s_per_token.get("lora", 0.0)
    if method == "qlora":
        per_token *= QLORA_SLOWDOWN
    config = settings.finetune_config(method)
    train_share = 1 - config.val_fraction
    epoch_tokens = stats.train_tokens * train_share
    tokens = epoch_tokens * config.epochs
    if config.max_steps:
        tokens = min(tokens, config.max_steps * config.batch_size * config.max_length)
    epochs_run = tokens / max(epoch_tokens, 1)
    val_tokens = stats.train_tokens * config.val_fraction
    evaluations = math.ceil(config.evals_per_epoch * epochs_run) if val_tokens else 0
    validate = evaluations * val_tokens * rates.forward_s_per_token
    probe = FORGETTING_TOKENS * rates.forward_s_per_token if config.forgetting_probe else 0.0
    return rates.load_s + tokens * per_token + validate + probe


def peak_memory(
    method: str, shape, stats: TaskStats, settings: RunSettings, device: str
) -> tuple[object, dict]:
    """The estimator's inference peak for a prompting or RAG `method` in the run's settings,
    and those settings (for suggest_fit). Fine-tuning methods go through `_fit` in plan.py."""
    from advisor.memory import estimate

    tokens = prompt_tokens(method, stats, settings)
    batch = stats.n_labels if stats.kind == "classification" else settings.batch_size
    seq = tokens + (stats.label_tokens if stats.kind == "classification" else stats.max_new_tokens)
    memo = {
        "batch": max(1, batch),
        "seq": max(1, math.ceil(seq)),
        "precision": settings.precision,
        "device": device,
    }
    return estimate(shape, "inference", **memo), memo
