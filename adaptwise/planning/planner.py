"""Put a plan together for a task: the advisor's ladder, the task's token counts, the cached (or
freshly measured) timing probe, and the memory estimator. Used by `adaptwise plan` and, in a
child process, by the TUI's recommendation screen."""

from __future__ import annotations

import time
from dataclasses import replace

from adaptwise.planning.estimates import RunSettings
from adaptwise.planning.plan import Plan, build_plan
from adaptwise.planning.targets import Target
from advisor.machine import Machine, this_machine
from advisor.questions import Answers
from advisor.recommend import recommend
from experiments.context import RunOptions


def run_settings(
    task,
    k: int = RunOptions.k,
    batch_size: int = RunOptions.batch_size,
    finetune_settings: dict | None = None,
    precision: str = "fp32",
    devices: int = 1,
) -> RunSettings:
    """The settings the run will use for `task`: each fine-tuning method's config built as the
    run builds it (its finetune: section, per-method mappings and the command line's
    `--finetune KEY=VALUE` overrides, `finetune_settings`), the rag: section, the resolved
    precision and the devices one training may use."""
    from finetune.config import METHODS, build_config

    section = task.settings.get("finetune", {}) or {}
    configs = {m: build_config(m, section, finetune_settings or {}, 0) for m in METHODS}
    rag = None
    if task.corpus is not None:
        from rag.settings import rag_settings

        rag = rag_settings(task)
    return RunSettings(
        k=k,
        batch_size=batch_size,
        precision=precision,
        devices=devices,
        finetune=configs,
        **({"rag": rag} if rag is not None else {}),
    )


def plan_precision(requested: str, machine: Machine) -> str:
    """The precision a run would resolve to on `machine`, by the run's own rule
    (experiments/precision.py precision_for: a precision the run refuses there is refused
    here, in the same line), read from the machine description rather than torch, so that
    planning for a GPU works anywhere."""
    from experiments.precision import bf16_supported_by_name, precision_for

    gpu = machine.device == "gpu"
    supported = gpu and bf16_supported_by_name(machine.gpu_name)
    return precision_for(requested, "cuda" if gpu else "cpu", supported)


def runnable(method: str, ctx=None) -> bool:
    """Whether this build's runner knows the method and, given the run's context, whether the
    task can run it (rag needs a corpus)."""
    return not_runnable_reason(method, ctx) is None


def not_runnable_reason(method: str, ctx=None) -> str | None:
    """Why the runner would refuse `method`: unknown to this build, or (with `ctx`, a
    RunContext) the checks the runner makes before loading any model; None if it would run."""
    from experiments.errors import AdaptwiseError
    from experiments.run.registry import make_method

    try:
        built = make_method(method, {})
        if ctx is not None:
            built.check(ctx)
    except AdaptwiseError as exc:
        return str(exc)
    return None


def make_plan(
    task,
    answers: Answers | None = None,
    limit: int | None = None,
    target: Target | None = None,
    budget_s: float | None = None,
    model: str | None = None,
    machine: Machine | None = None,
    refresh: bool = False,
    log=print,
    finetune_settings: dict | None = None,
    precision: str | None = None,
    methods: list[str] | None = None,
    devices: int | None = None,
) -> Plan:
    """The plan for `task` on this machine (see adaptwise/planning/plan.py and timing_probe.py),
    with `devices` of its GPU (None: the answers' GPU count) for each training."""
    from advisor.architectures import resolve_shape
    from advisor.verdict import answers_from_task
    from experiments.context import RunContext
    from experiments.errors import AdaptwiseError
    from experiments.models import resolve_checkpoint

    machine = machine or this_machine()
    # A precision the run would refuse on this machine is one line now, before any probe.
    precision = plan_precision(precision or task.precision or "auto", machine)
    answers = answers_from_task(task, answers)
    if answers.gpu_memory_gb is None and machine.gpu_memory_gb:
        answers = replace(answers, gpu_memory_gb=machine.gpu_memory_gb)
    if devices is not None:
        answers = replace(answers, gpus=str(devices))
    rec = recommend(answers)
    checkpoint, name = resolve_checkpoint(model, progress=log)
    try:
        shape = resolve_shape(checkpoint)
    except AdaptwiseError:
        shape = resolve_shape(answers.model)
    ctx = RunContext(task, RunOptions(model=model, limit=limit), log=log)
    n_eval = len(task.scored_rows(limit))

    stats, rates, cached = _stats_and_rates(ctx, checkpoint, name, machine, n_eval, refresh, log)
    plan = build_plan(
        methods or rec.methods,
        stats,
        shape,
        machine,
        settings=run_settings(
            task,
            finetune_settings=finetune_settings,
            precision=precision,
            devices=devices or answers.gpu_count,
        ),
        rates=rates,
        target=target,
        budget_s=budget_s,
        runnable=lambda m: runnable(m, ctx),
        model=name,
        ruled_out=[{"method": r.method, "reasons": r.reasons} for r in rec.ruled_out],
    )
    for step in plan.steps:
        if not step.runnable:
            step.notes.append(not_runnable_reason(step.method, ctx) or "not runnable")
    plan.probe_cached = cached
    return plan


def _stats_and_rates(ctx, checkpoint: str, name: str, machine: Machine, n_eval: int, refresh, log):
    """The task's token counts and the model's speed on this machine: (stats, rates, whether the
    rates came from the cache). Only a probe loads the model; cached rates need the tokenizer."""
    from adaptwise.planning.timing_probe import cached_rates, measure_rates, store_rates, task_stats

    task = ctx.task
    rates = None if refresh else cached_rates(checkpoint, machine)
    cached = rates is not None
    if rates is None:
        import torch  # noqa: F401 - imported before timing the load, as a run has it already
        import transformers  # noqa: F401

        started = time.perf_counter()
        lm = ctx.lm
        load_s = time.perf_counter() - started
        tokenizer, fmt = lm.tokenizer, ctx.prompt_format
    else:  # the token counts need only the tokenizer
        from transformers import AutoTokenizer

        from experiments.prompts import PromptFormat, system_text

        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        fmt = PromptFormat(tokenizer, system_text(task))
    stats = task_stats(task, tokenizer, fmt, n_eval, ctx.max_new_tokens)
    if rates is None:
        log(f"Timing {name} on this machine (once; cached)...")
        rates = measure_rates(lm, task, fmt, machine)
        rates = replace(rates, load_s=round(load_s, 2), model=name)
        store_rates(checkpoint, machine, rates)
    return stats, rates, cached
