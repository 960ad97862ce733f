"""`adaptwise plan`: the advisor's ladder for a task as runs on this machine, with estimated
time and peak memory per method, what does not fit, and what a budget allows."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from adaptwise.api_options import add_api_options
from adaptwise.running import add_seeds_option, seeds_setting
from experiments.precision import PRECISIONS


def register(sub, add_run_options) -> None:
    plan = sub.add_parser(
        "plan",
        help="the experiments to run for a task, with estimated time and memory here",
        description="Order the advisor's methods for TASK (answers pre-filled from the task, or "
        "--answers), and estimate each one's wall time (preparation and scoring) and peak memory "
        "on this machine from a short timing probe of the model (cached) and the memory "
        "estimator; mark what does not fit and what fits in --budget.",
    )
    plan.add_argument("task", type=Path, help="task YAML file")
    plan.add_argument("--target", help="stop climbing at this score, e.g. accuracy=0.8")
    plan.add_argument("--budget", help="time budget for the whole climb, e.g. 30m, 2h, 90s")
    plan.add_argument("--answers", type=Path, help="answers YAML (see adaptwise advise)")
    plan.add_argument(
        "--model", help="model folder, .gguf or hub id (default: the embedded SmolLM2-135M)"
    )
    plan.add_argument(
        "--limit", type=int, default=0, help="eval rows each method scores (0: all; default)"
    )
    plan.add_argument(
        "--gpu-gb",
        type=float,
        help="check memory against a GPU of this many GB (0: CPU; default: detected); the "
        "timings stay this machine's",
    )
    plan.add_argument(
        "--refresh-probe", action="store_true", help="re-measure the model's speed here"
    )
    plan.add_argument(
        "--methods",
        help="plan these comma-separated methods (as `run --methods`) instead of the advisor's "
        "ladder",
    )
    plan.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="as `run --precision` (default: the task file's, else auto: bf16 on a GPU, fp32 "
        "on a CPU)",
    )
    plan.add_argument(
        "--finetune",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fine-tuning setting, as `run --finetune` (e.g. batch_size=8)",
    )
    add_seeds_option(plan, "as `run --seeds`: each fine-tuning method trains and scores N times")
    plan.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="GPUs one training may use, each of --gpu-gb or the detected size (default: the "
        "answers' gpus, else 1): fine-tuning is planned per device, DDP or FSDP as the run "
        "would choose (finetune strategy:)",
    )
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    add_api_options(plan)  # --model openai:NAME: time a few real requests, price the tokens
    plan.set_defaults(handler=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from adaptwise.planning.targets import parse_budget, parse_target
    from advisor.machine import this_machine
    from advisor.questions import Answers, load_answers
    from experiments.errors import AdaptwiseError
    from experiments.task import load_task

    if args.model and args.model.startswith("openai:"):
        from adaptwise.plan_served import cmd_plan_served

        return cmd_plan_served(args)
    from adaptwise.api_options import api_run_options

    api_run_options(args)  # --base-url or --tokenizer without a served model: one line
    if args.limit < 0:
        raise AdaptwiseError("--limit must be 0 (all rows) or more")
    if args.devices is not None and args.devices < 1:
        raise AdaptwiseError("--devices must be at least 1")
    budget = parse_budget(args.budget) if args.budget is not None else None
    target = parse_target(args.target) if args.target is not None else None
    task = load_task(args.task)
    if target:
        target = parse_target(args.target, task.kind)
    answers = load_answers(args.answers) if args.answers else Answers()
    if args.gpu_gb is not None:
        if args.gpu_gb < 0:
            raise AdaptwiseError("--gpu-gb must be 0 (CPU) or more")
        machine = this_machine(args.gpu_gb or None)
        answers = replace(answers, gpu_memory_gb=args.gpu_gb or None)
    else:
        machine = this_machine()
    from adaptwise.planning.planner import make_plan
    from adaptwise.running import parse_settings
    from finetune.config import build_config

    settings = parse_settings(args.finetune, flag="--finetune")
    if seeds_setting(args) is not None:
        settings["seeds"] = args.seeds  # as the run's --seeds, over the task file's
    build_config("lora", task.settings.get("finetune", {}), settings, 0)  # a bad value: one line
    methods = None
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise AdaptwiseError("--methods is empty; name at least one method")
    log = (lambda message: None) if args.json else _stderr
    plan = make_plan(
        task,
        answers,
        limit=args.limit or None,
        target=target,
        budget_s=budget,
        model=args.model,
        machine=machine,
        refresh=args.refresh_probe,
        log=log,
        finetune_settings=settings,
        precision=args.precision,
        methods=methods,
        devices=args.devices,
    )
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        _print(plan)
    return 0


def _settings_phrase(m: dict) -> str:
    accumulation = m["gradient_accumulation_steps"]
    batch = (
        f"batch {m['micro_batch']} x {accumulation} steps"
        if accumulation > 1
        else (f"batch {m['batch']}")
    )
    ckpt = "gradient checkpointing" if m["gradient_checkpointing"] else "no checkpointing"
    spread = ""
    if m.get("devices", 1) > 1:
        offload = " with CPU offload" if m.get("cpu_offload") else ""
        spread = f"{m['strategy'].upper()}{offload} over {m['devices']} devices, "
    return f"{spread}{m['precision']}, {batch}, seq {m['seq']}, {ckpt}, {m['optimizer']}"


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _print(plan) -> None:
    from rich.console import Console

    console = Console()
    console.print(_table(plan))
    _print_notes(console, plan)


def _table(plan):
    """The plan as a rich Table: one row per rung."""
    from rich import box
    from rich.table import Table

    from experiments.report.formatting import format_short

    devices = (
        max((s.memory_settings or {}).get("devices", 1) for s in plan.steps) if plan.steps else 1
    )
    per_device = f" (training on {devices} of them; peaks per device)" if devices > 1 else ""
    # A light frame without outer edges keeps all eight columns whole in an 80-column terminal.
    table = Table(
        title=f"Plan for {plan.task} ({plan.rows_scored} eval rows)",
        caption=f"{plan.model} on {plan.machine.describe()}{per_device}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for column, justify in (
        ("method", "left"),
        ("prepare", "right"),
        ("score", "right"),
        ("total", "right"),
        ("so far", "right"),
        ("peak", "right"),
        ("fits", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)
    if plan.budget_s is not None:
        table.add_column("budget", no_wrap=True, min_width=6)
    for step in plan.steps:
        fits = "yes" if step.fits else "no"
        if not step.runnable:
            fits += " *"
        cells = [
            step.method,
            format_short(step.prepare_s),
            format_short(step.score_s),
            format_short(step.total_s),
            format_short(step.cumulative_s),
            f"{step.peak_memory_gb:.1f} GB",
            fits,
        ]
        if plan.budget_s is not None:
            cells.append("within" if step.in_budget else "over")
        table.add_row(*cells, style=None if step.fits else "red")
    return table


def _print_notes(console, plan) -> None:
    """Below the table: the memory settings, what does not fit and why, the probe, the climb."""
    for step in plan.steps:
        if step.memory_settings:
            m = step.memory_settings
            console.print(
                f"{step.method} trains with {_settings_phrase(m)} (estimate "
                f"{m['estimate_gb']:.1f} GB"
                + (f" of {m['budget_gb']:.1f} GB" if m.get("budget_gb") is not None else "")
                + ")"
                + ("; frees the shared model while training" if m.get("shared_base_freed") else ""),
                markup=False,
                highlight=False,
            )
    for step in plan.steps:
        if not step.fits:
            console.print(
                f"{step.method} does not fit in {plan.machine.memory_gb:.1f} GB "
                f"({plan.machine.memory_source}): "
                f"{step.fit_change or 'no setting found that fits'}"
            )
    if any(not s.runnable for s in plan.steps):
        for step in plan.steps:
            if not step.runnable:
                reason = step.notes[-1] if step.notes else "not runnable in this build"
                console.print(f"* {step.method}: {reason}", markup=False, highlight=False)
    if plan.rates:
        r = plan.rates
        where = "cached" if plan.probe_cached else f"measured now in {r.probe_s:.0f} s"
        console.print(
            f"Timing probe ({where}, {r.measured_at}): {1 / r.forward_s_per_token:.0f} prompt "
            f"tokens/s, {1 / r.train_s_per_token['lora']:.1f} LoRA training tokens/s. "
            "Estimates scale these by the task's token counts; see docs/planning.md."
        )
    summary = plan.summary()
    if summary:
        console.print(summary)
