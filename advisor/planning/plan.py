"""The experiment plan: the advisor's ladder as runs on this machine, each with its estimated
wall time (preparation and scoring apart) and peak memory, whether it fits, and what would make
it fit; a target to stop at and a time budget that cuts the ladder off.

Pure arithmetic on three inputs: the task's token counts (`TaskStats`), the model's measured
speed on this machine (`Rates`, from the short timing probe in `advisor/planning/probe.py`), and the
memory estimator (`advisor/memory.py`). How each estimate is made is in the README ("Planning").
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from advisor.machine import Machine
from experiments.errors import AdaptwiseError
from experiments.metrics import METRICS_BY_KIND
from experiments.report.formatting import format_duration

# Every metric adaptwise reports, by task kind.
ALL_METRICS = tuple(dict.fromkeys(m for ms in METRICS_BY_KIND.values() for m in ms))

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
EMBEDDING_SELECTORS = ("few-shot-embedding", "few-shot-mmr")
FINETUNING = ("lora", "qlora", "full-ft")


@dataclass(frozen=True)
class Target:
    metric: str
    value: float

    def describe(self) -> str:
        return f"{self.metric} >= {self.value:g}"


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
    """The run's settings that change time and memory (defaults as `adaptwise run`'s)."""

    k: int = 4
    batch_size: int = 16  # generation batch
    precision: str = "fp32"  # resolved: bf16 | fp16 | fp32 (experiments/precision.py)
    ft_batch: int = 4
    ft_max_length: int = 256
    ft_epochs: float = 1.0
    ft_max_steps: int = 0
    ft_rank: int = 16
    ft_val_fraction: float = 0.1
    ft_evals_per_epoch: int = 2
    ft_forgetting_probe: bool = True
    ft_lora_dropout: float = 0.0
    # The memory settings given in the task file or on the command line (None: the fit
    # chooses them, as the run does), the fit's mode and its memory override.
    ft_gradient_checkpointing: bool | None = None
    ft_accumulation: int | None = None
    ft_optimizer: str | None = None
    ft_fit: str = "auto"
    ft_fit_memory_gb: float | None = None
    rag_k: int = 2
    rag_chunk_tokens: int = 64
    rag_overlap_tokens: int = 8
    rag_shots: int = 2


@dataclass
class Step:
    method: str
    order: int
    runnable: bool
    prepare_s: float | None  # None: not measured yet (no probe result)
    score_s: float | None
    prompt_tokens: float
    peak_memory_gb: float
    fits: bool
    fit_change: str | None = None  # the first change that would make it fit
    memory_settings: dict | None = None  # fine-tuning: the settings the run will train with
    cumulative_s: float | None = None
    in_budget: bool | None = None  # None: no budget given
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float | None:
        if self.prepare_s is None or self.score_s is None:
            return None
        return self.prepare_s + self.score_s

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "order": self.order,
            "runnable": self.runnable,
            "estimate_s": {
                "prepare": _round(self.prepare_s),
                "score": _round(self.score_s),
                "total": _round(self.total_s),
            },
            "cumulative_s": _round(self.cumulative_s),
            "prompt_tokens": round(self.prompt_tokens, 1),
            "peak_memory_gb": round(self.peak_memory_gb, 3),
            "fits": self.fits,
            "fit_change": self.fit_change,
            "memory_settings": self.memory_settings,
            "in_budget": self.in_budget,
            "notes": self.notes,
        }


@dataclass
class Plan:
    task: str
    model: str
    machine: Machine
    rows_scored: int
    steps: list[Step]
    ruled_out: list[dict] = field(default_factory=list)
    target: Target | None = None
    budget_s: float | None = None
    rates: Rates | None = None
    probe_cached: bool = False

    @property
    def total_s(self) -> float | None:
        times = [s.total_s for s in self.steps if s.fits and s.runnable]
        return None if any(t is None for t in times) else sum(times)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "model": self.model,
            "machine": self.machine.to_dict(),
            "rows_scored": self.rows_scored,
            "target": asdict(self.target) if self.target else None,
            "budget_s": self.budget_s,
            "total_s": _round(self.total_s),
            "steps": [s.to_dict() for s in self.steps],
            "ruled_out": self.ruled_out,
            "probe": {**self.rates.to_dict(), "cached": self.probe_cached} if self.rates else None,
        }

    def summary(self) -> str:
        """One line on when to stop and what the budget allows."""
        parts = []
        if self.target:
            parts.append(
                f"Climb in order and stop at the first method reaching {self.target.describe()}."
            )
        if self.budget_s is not None:
            inside = [s.method for s in self.steps if s.in_budget]
            allowed = ", ".join(inside) if inside else "no method"
            parts.append(f"Budget {format_duration(self.budget_s)}: {allowed}.")
        total = self.total_s
        if total is not None and any(s.fits and s.runnable for s in self.steps):
            parts.append(f"The whole ladder: about {format_duration(total)}.")
        return " ".join(parts)


def parse_target(text: str, kind: str | None = None) -> Target:
    """`accuracy=0.8` (or `accuracy=80%`) -> Target; one clear line for a bad value."""
    metric, sep, value = (text or "").partition("=")
    metric = metric.strip().lower().replace("-", "_")
    if not sep or not metric or not value.strip():
        raise AdaptwiseError(f"--target {text!r}: expected METRIC=VALUE, e.g. accuracy=0.8")
    allowed = METRICS_BY_KIND.get(kind, ALL_METRICS) if kind else ALL_METRICS
    if metric not in allowed:
        what = f"a {kind} task is scored by" if kind else "known metrics:"
        raise AdaptwiseError(f"--target {text!r}: {what} {', '.join(allowed)}")
    raw = value.strip()
    try:
        number = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise AdaptwiseError(f"--target {text!r}: {raw!r} is not a number") from None
    if not 0 < number <= 1 or math.isnan(number):
        raise AdaptwiseError(f"--target {text!r}: the value must be in (0, 1], e.g. 0.8 or 80%")
    return Target(metric, number)


_BUDGET = re.compile(r"(\d+(?:\.\d+)?)(h|min|m|s)")
_UNITS = {"h": 3600, "m": 60, "min": 60, "s": 1}


def parse_budget(text: str) -> float:
    """`30m`, `2h`, `90s`, `1h30m` -> seconds; one clear line for a bad value."""
    compact = (text or "").strip().lower().replace(" ", "")
    parts = _BUDGET.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise AdaptwiseError(
            f"--budget {text!r}: expected a duration such as 30m, 2h, 90s or 1h30m"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise AdaptwiseError(f"--budget {text!r}: the budget must be more than zero")
    return seconds


def prompt_tokens(method: str, stats: TaskStats, settings: RunSettings) -> float:
    """Mean prompt tokens of `method` on the task."""
    base, k = _split_k(method, settings.k)
    if base in ("rag",) or base.startswith("rag"):
        passage = settings.rag_chunk_tokens + PASSAGE_OVERHEAD_TOKENS
        shots = settings.rag_shots * (passage + stats.example_tokens)
        return stats.prompt_tokens + settings.rag_k * passage + shots
    if base.startswith("few-shot"):
        return stats.prompt_tokens + k * stats.example_tokens
    return stats.prompt_tokens


def score_seconds(method: str, stats: TaskStats, rates: Rates, settings: RunSettings) -> float:
    """Scoring the eval rows: prompt forward passes, plus label continuations (classification)
    or generation steps shared by a batch (qa, generation)."""
    tokens = prompt_tokens(method, stats, settings)
    if stats.kind == "classification":
        per_row = (tokens + stats.n_labels * stats.label_tokens) * rates.forward_s_per_token
        return stats.n_eval * per_row
    batch = max(1, min(settings.batch_size, stats.n_eval))
    batches = math.ceil(stats.n_eval / batch)
    steps = stats.max_new_tokens
    decode = rates.decode_s_per_step * max(1.0, batch / max(rates.decode_batch, 1)) ** 0.5
    return stats.n_eval * tokens * rates.forward_s_per_token + batches * steps * decode


def prepare_seconds(method: str, stats: TaskStats, rates: Rates, settings: RunSettings) -> float:
    """Preparing the method before it scores: embedding, indexing, training."""
    base, _ = _split_k(method, settings.k)
    total = 0.0
    parts = base.split("+")
    if any(p in EMBEDDING_SELECTORS for p in parts):
        total += EMBEDDER_LOAD_S + stats.n_train / EMBED_TEXTS_PER_S
    if any(p.startswith("rag") for p in parts):
        step = max(settings.rag_chunk_tokens - settings.rag_overlap_tokens, 1)
        chunks = math.ceil(stats.corpus_tokens / step) if stats.corpus_tokens else 0
        total += EMBEDDER_LOAD_S + (chunks + stats.n_train) / EMBED_TEXTS_PER_S
    tuned = next((p for p in parts if p in FINETUNING), None)
    if tuned:
        total += training_seconds(tuned, stats, rates, settings)
    return total


def training_seconds(method: str, stats: TaskStats, rates: Rates, settings: RunSettings) -> float:
    """Load a fresh copy, train (tokens x measured s/token), validate, and run the forgetting
    probe before and after."""
    per_token = rates.train_s_per_token.get("full-ft" if method == "full-ft" else "lora")
    if per_token is None:
        per_token = rates.train_s_per_token.get("lora", 0.0)
    if method == "qlora":
        per_token *= QLORA_SLOWDOWN
    train_share = 1 - settings.ft_val_fraction
    epoch_tokens = stats.train_tokens * train_share
    tokens = epoch_tokens * settings.ft_epochs
    if settings.ft_max_steps:
        tokens = min(tokens, settings.ft_max_steps * settings.ft_batch * settings.ft_max_length)
    epochs_run = tokens / max(epoch_tokens, 1)
    val_tokens = stats.train_tokens * settings.ft_val_fraction
    evaluations = math.ceil(settings.ft_evals_per_epoch * epochs_run) if val_tokens else 0
    validate = evaluations * val_tokens * rates.forward_s_per_token
    probe = FORGETTING_TOKENS * rates.forward_s_per_token if settings.ft_forgetting_probe else 0.0
    return rates.load_s + tokens * per_token + validate + probe


def peak_memory(
    method: str, shape, stats: TaskStats, settings: RunSettings, device: str
) -> tuple[object, dict]:
    """The estimator's inference peak for a prompting or RAG `method` in the run's settings,
    and those settings (for suggest_fit). Fine-tuning methods go through `_fit`."""
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


def build_plan(
    methods: list[str],
    stats: TaskStats,
    shape,
    machine: Machine,
    settings: RunSettings | None = None,
    rates: Rates | None = None,
    target: Target | None = None,
    budget_s: float | None = None,
    runnable=lambda m: True,
    model: str = "",
    ruled_out: list[dict] | None = None,
) -> Plan:
    """The plan for `methods` in ladder order; times are None until `rates` are measured."""
    from advisor.memory import GB, suggest_fit

    settings = settings or RunSettings()
    steps = []
    width = {"fp32": 4, "bf16": 2, "fp16": 2}[settings.precision]
    shared_gb = shape.total_params * width / GB  # the run's inference copy, loaded once
    for order, method in enumerate(methods, 1):
        base, _ = _split_k(method, settings.k)
        parts = base.split("+")
        tuned = next((p for p in parts if p in FINETUNING), "lora" if base == "raft" else None)
        uses_embedder = any(p in EMBEDDING_SELECTORS or p.startswith("rag") for p in parts)
        extra_gb = EMBEDDER_GB if uses_embedder and machine.device == "cpu" else 0.0
        notes, change, memory_settings = [], None, None
        if tuned:
            choice, release = _fit(tuned, shape, settings, machine, extra_gb, shared_gb)
            memory_settings = {**choice.to_dict(), "shared_base_freed": release}
            kept = 0.0 if tuned == "lora" or release else shared_gb
            peak = choice.estimate_gb + kept + extra_gb
            fits = choice.fits
            change = None if fits else choice.suggestion
            notes.append(f"trains with {choice.describe()}")
            if tuned == "lora":
                notes.append("trains its adapter on the run's shared model (one copy)")
            elif release:
                notes.append(f"frees the run's shared {shared_gb:.2f} GB copy while it trains")
            else:
                notes.append(f"includes the run's shared {shared_gb:.2f} GB inference copy")
        else:
            est, memo = peak_memory(method, shape, stats, settings, machine.device)
            peak = est.total_gb + extra_gb
            fits = peak <= machine.memory_gb
            if not fits:
                hints = suggest_fit(
                    shape, "inference", max(machine.memory_gb - extra_gb, 0.1), **memo
                )
                change = hints[0].change if hints else None
        if machine.device == "cpu" and base == "qlora":
            notes.append("4-bit kernels need CUDA or bitsandbytes' CPU backend")
        step = Step(
            method=method,
            order=order,
            runnable=runnable(method),
            prepare_s=prepare_seconds(method, stats, rates, settings) if rates else None,
            score_s=score_seconds(method, stats, rates, settings) if rates else None,
            prompt_tokens=prompt_tokens(method, stats, settings),
            peak_memory_gb=peak,
            fits=fits,
            fit_change=change,
            memory_settings=memory_settings,
            notes=notes,
        )
        steps.append(step)
    _cumulate(steps, budget_s)
    return Plan(
        task=stats.name,
        model=model or shape.name,
        machine=machine,
        rows_scored=stats.n_eval,
        steps=steps,
        ruled_out=ruled_out or [],
        target=target,
        budget_s=budget_s,
        rates=rates,
    )


def _fit(tuned: str, shape, settings: RunSettings, machine: Machine, extra_gb: float, shared_gb):
    """The run's fit (advisor/fit.py) for a fine-tuning method on this machine: the same
    settings, the same budget (the machine's memory, or finetune fit_memory_gb), the same
    choice of keeping or freeing the shared copy."""
    from advisor.fit import fit_method

    budget = settings.ft_fit_memory_gb or machine.memory_gb - extra_gb
    if settings.ft_fit == "off":
        budget = None
    return fit_method(
        shape,
        budget,
        shared_gb,
        shares_base=tuned == "lora",
        method=tuned,
        batch=settings.ft_batch,
        seq=settings.ft_max_length,
        precision=settings.precision,
        device=machine.device,
        gradient_checkpointing=settings.ft_gradient_checkpointing,
        accumulation=settings.ft_accumulation,
        optimizer=settings.ft_optimizer,
        lora_r=settings.ft_rank,
        lora_dropout=settings.ft_lora_dropout,
    )


def _cumulate(steps: list[Step], budget_s: float | None) -> None:
    """Running total over the rungs that will run (they fit and this build runs them); a
    budget marks each rung by whether the climb reaches its end within it."""
    running = 0.0
    known = True
    for step in steps:
        if not (step.fits and step.runnable):
            step.in_budget = False if budget_s is not None else None
            continue
        if step.total_s is None:
            known = False
        else:
            running += step.total_s
        step.cumulative_s = running if known else None
        if budget_s is not None:
            step.in_budget = bool(known and running <= budget_s)


def _split_k(method: str, default_k: int) -> tuple[str, int]:
    match = re.fullmatch(r"(.+?)-k(\d+)", method)
    return (match.group(1), int(match.group(2))) if match else (method, default_k)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
