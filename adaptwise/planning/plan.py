"""The experiment plan: the advisor's ladder as runs on this machine, each with its estimated
wall time (preparation and scoring apart) and peak memory, whether it fits, and what would make
it fit; a target to stop at and a time budget that cuts the ladder off.

The estimates per rung are in `adaptwise/planning/estimates.py`, the fit of a fine-tuning rung
comes from `advisor/fit.py`, the target and the budget from `adaptwise/planning/targets.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from adaptwise.planning.estimates import (
    EMBEDDER_GB,
    Rates,
    RunSettings,
    TaskStats,
    built,
    peak_memory,
    prepare_seconds,
    prompt_tokens,
    score_seconds,
    uses_embedder,
)
from adaptwise.planning.targets import Target
from advisor.machine import Machine
from experiments.report.formatting import format_duration
from finetune.fitting import shares_base


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
    from advisor.memory import GB

    settings = settings or RunSettings()
    steps = []
    width = {"fp32": 4, "bf16": 2, "fp16": 2}[settings.precision]
    shared_gb = shape.total_params * width / GB  # the run's inference copy, loaded once
    for order, method in enumerate(methods, 1):
        tuned = built(method, settings).trains
        embeds = uses_embedder(method, settings)
        extra_gb = EMBEDDER_GB if embeds and machine.device == "cpu" else 0.0
        if tuned:
            memory = _fit(tuned, shape, settings, machine, extra_gb, shared_gb)
            peak, fits, change, notes = _training_memory(memory, tuned, settings, extra_gb)
            memory_settings = memory.to_dict()  # the record the run writes into results.json
        else:
            peak, fits, change = _inference_memory(
                method, shape, stats, settings, machine, extra_gb
            )
            notes, memory_settings = [], None
        if machine.device == "cpu" and tuned == "qlora":
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


def _training_memory(memory, tuned: str, settings: RunSettings, extra_gb: float):
    """(peak, fits, the change that would fit, notes) of a fine-tuning rung from its fit."""
    choice, release, shared_gb = memory.choice, memory.release_shared, memory.shared_gb
    on_base = shares_base(tuned) and choice.strategy != "fsdp"
    kept = 0.0 if on_base or release else shared_gb
    notes = [f"trains with {choice.describe()}"]
    seeds = settings.finetune_config(tuned).seeds
    if seeds > 1:
        notes.append(f"trains and scores {seeds} seeds: {seeds}x the time of one")
    if choice.devices > 1:
        notes.append(f"peak memory per device, of {choice.devices}")
    batch = settings.finetune_config(tuned).batch_size
    if batch % choice.devices:
        notes.append(
            f"finetune batch_size {batch} is the batch of all "
            f"{choice.devices} devices together: make it a multiple of {choice.devices}"
        )
    if on_base:
        notes.append("trains its adapter on the run's shared model (one copy)")
    elif release:
        notes.append(f"frees the run's shared {shared_gb:.2f} GB copy while it trains")
    else:
        notes.append(f"includes the run's shared {shared_gb:.2f} GB inference copy")
    change = None if choice.fits else choice.suggestion
    return choice.estimate_gb + kept + extra_gb, choice.fits, change, notes


def _inference_memory(method: str, shape, stats, settings, machine: Machine, extra_gb: float):
    """(peak, fits, the change that would fit) of a prompting or RAG rung."""
    from advisor.fit_suggestions import suggest_fit

    est, memo = peak_memory(method, shape, stats, settings, machine.device)
    peak = est.total_gb + extra_gb
    if peak <= machine.memory_gb:
        return peak, True, None
    hints = suggest_fit(shape, "inference", max(machine.memory_gb - extra_gb, 0.1), **memo)
    return peak, False, hints[0].change if hints else None


def _fit(tuned: str, shape, settings: RunSettings, machine: Machine, extra_gb: float, shared_gb):
    """The run's fit for a fine-tuning method on this machine (finetune/fitting.py fit_config,
    which the run calls): the same config, the same budget rule (`finetune fit_memory_gb`, else
    the machine's usable memory, the tightest limit the run reads too), the same choice of
    keeping or freeing the shared copy."""
    from finetune.fitting import MemoryPlan, fit_budget, fit_config

    config = settings.finetune_config(tuned)
    # Per device: each GPU's memory, or on a CPU an equal part of it for each process.
    share = 1 if machine.device == "gpu" else settings.devices
    usable = (machine.memory_gb - extra_gb) / share
    budget, source = fit_budget(config, usable, machine.memory_source)
    choice, release = fit_config(
        config, shape, budget, shared_gb, settings.precision, machine.device, settings.devices
    )
    return MemoryPlan(choice, release, shared_gb, budget, machine.device, source)


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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
