"""`adaptwise plan TASK --model openai:NAME`: the served model's plan (adaptwise/planning/served.py)
printed as a table, or as JSON."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_plan_served(args: argparse.Namespace) -> int:
    from adaptwise.api_options import api_run_options
    from adaptwise.planning.served import make_served_plan, served_methods
    from advisor.questions import Answers, load_answers
    from advisor.recommend import recommend
    from advisor.verdict import answers_from_task
    from experiments.context import RunOptions
    from experiments.errors import AdaptwiseError
    from experiments.task import load_task

    if args.limit < 0:
        raise AdaptwiseError("--limit must be 0 (all rows) or more")
    for flag in ("target", "budget", "gpu_gb", "precision"):
        if getattr(args, flag, None) is not None:
            raise AdaptwiseError(
                f"--{flag.replace('_', '-')} plans local runs; a served model's plan times its "
                "requests and prices its tokens (leave it off with --model openai:NAME)"
            )
    options = RunOptions(model=args.model, limit=args.limit or None, **api_run_options(args))
    task = load_task(args.task)
    if args.methods:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not names:
            raise AdaptwiseError("--methods is empty; name at least one method")
    else:
        answers = load_answers(args.answers) if args.answers else Answers()
        names = recommend(answers_from_task(task, answers)).methods
    methods, skipped = served_methods(names)
    if not methods:
        raise AdaptwiseError(
            f"none of {', '.join(names)} runs on a served model; plan prompting and RAG methods "
            "(zero-shot, few-shot-*, rag*) with --model openai:NAME"
        )
    log = (lambda message: None) if args.json else _stderr
    plan = make_served_plan(task, methods, options, limit=args.limit or None, log=log)
    plan.skipped = skipped
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        _print(plan)
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _print(plan) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from experiments.plain_text import plain
    from experiments.report.formatting import format_short

    console = Console()
    cur = plain(plan.prices.get("currency", "USD"), True)
    caption = f"{plan.model} at {plan.base_url}, {plan.concurrency} requests at once"
    table = Table(
        title=Text(plain(f"Plan for {plan.task} ({plan.rows_scored} eval rows)", True)),
        caption=Text(plain(caption, True)),
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for column in ("method", "prepare", "score", "total", "latency", "tok/query", cur, "peak"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)
    for s in plan.steps:
        if not s.runnable:
            table.add_row(Text(s.method), "-", "-", "-", "-", "-", "-", "server", style="red")
            continue
        table.add_row(
            Text(s.method),
            format_short(s.prepare_s),
            format_short(s.score_s),
            format_short(s.total_s),
            f"{s.latency_mean_s:.2f} s",
            f"{s.prompt_tokens:,.0f}+{s.generated_tokens:,.0f}",
            f"{s.cost:.4f}",
            "server",
        )
    console.print(table)
    say = lambda text: console.print(plain(text), markup=False, highlight=False)  # noqa: E731
    for s in plan.steps:
        for note in s.notes:
            say(f"{s.method}: {note}")
    for item in plan.skipped:
        say(f"not planned: {item['method']}: {item['reason']}")
    probed = [s for s in plan.steps if s.runnable]
    if probed:
        rows, cached = probed[0].probe_rows, sum(s.probe_cached for s in probed)
        say(
            f"Probe: each method's first {rows} eval rows asked one request at a time "
            f"({cached} answers from the cache, with the latency measured when asked); a later "
            "run asks nothing again for them. latency: mean per request; tok/query: prompt + "
            "generated tokens per query, from the server's usage."
        )
        say(
            f"score = rows x requests per row x latency / {plan.concurrency} (--concurrency): "
            "it assumes the server answers that many at once as fast as one; one at a time: "
            + ", ".join(f"{s.method} {format_short(s.serial_s)}" for s in probed)
            + f". {cur}: tokens x (prompt {plan.prices['prompt_per_1k_tokens']:g}, generated "
            f"{plan.prices['generated_per_1k_tokens']:g} per 1,000 tokens). peak: the memory is "
            "the server's, not estimated here."
        )
    if plan.total_s is not None:
        say(
            f"The whole ladder: about {format_short(plan.total_s)} and {plan.total_cost:.4f} {cur}."
        )
