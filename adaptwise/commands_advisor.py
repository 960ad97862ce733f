"""`adaptwise advise`: the recommendation without the TUI."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def register(sub, add_run_options) -> None:
    advise = sub.add_parser(
        "advise",
        help="recommend which adaptations to try, in order, and why",
        description="Walk Meta's decision questions (from --answers, else the defaults) and "
        "print the ladder of methods to try, the ones ruled out, and warnings.",
    )
    advise.add_argument("--answers", type=Path, help="answers YAML (see --save-answers)")
    advise.add_argument(
        "--gpu-gb",
        type=float,
        help="GPU memory in GB (default: detected with nvidia-smi, else CPU only)",
    )
    advise.add_argument(
        "--model", help="architecture name, config.json or model folder (default: smollm2-135m)"
    )
    advise.add_argument(
        "--results",
        type=Path,
        help="a run's results.json: its measured zero-shot score (and, without --answers, its "
        "train size and corpus) inform the advice",
    )
    advise.add_argument(
        "--queries-per-day",
        help="queries the adapted model will serve per day in production: adds what hosted "
        "prompting vs an always-on small model costs per month at that volume",
    )
    advise.add_argument("--save-answers", type=Path, help="write the answers used as YAML")
    advise.add_argument("--json", action="store_true", help="machine-readable output")
    advise.set_defaults(handler=cmd_advise)

    tui = sub.add_parser(
        "tui",
        help="the guided flow in the terminal: task, questions, advice, run, results",
        description="Open the terminal UI: choose a task, answer Meta's decision questions, "
        "read the recommendation, run it and compare the results.",
    )
    tui.add_argument(
        "task",
        type=Path,
        nargs="?",
        help="task YAML or its folder, e.g. demo/support-intents (default: choose on screen)",
    )
    tui.add_argument(
        "--limit",
        type=int,
        default=8,
        help="eval rows per method in the run "
        "(0: all; default: %(default)s, for a quick first look)",
    )
    tui.add_argument("--out", type=Path, default=Path("runs"), help="default: %(default)s")
    tui.set_defaults(handler=cmd_tui)


def cmd_tui(args: argparse.Namespace) -> int:
    from adaptwise.tui.app import AdaptwiseApp
    from experiments.errors import AdaptwiseError

    if args.limit < 0:
        raise AdaptwiseError("--limit must be 0 (all rows) or more")
    AdaptwiseApp(args.task, limit=args.limit or None, out_root=args.out).run()
    return 0


def detect_gpu_gb() -> float | None:
    """Total memory of the first NVIDIA GPU, without importing torch; None when there is none."""
    from advisor.machine import detect_gpu_gb as detect

    return detect()


def read_results(path: Path) -> dict:
    """A run's results.json with a zero-shot score, or one clear error."""
    from experiments.errors import AdaptwiseError

    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        metric = results["task"]["metric"]
        float(results["methods"]["zero-shot"]["metrics"][metric])
        return results
    except FileNotFoundError:
        raise AdaptwiseError(f"{path}: no such results file") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        raise AdaptwiseError(
            f"{path}: not an adaptwise results.json with a zero-shot result; run "
            "`adaptwise run TASK --methods zero-shot` first"
        ) from None


def cmd_advise(args: argparse.Namespace) -> int:
    from advisor.questions import Answers, dump_answers, load_answers
    from advisor.recommend import recommend
    from experiments.atomic import write_text_atomic

    answers = load_answers(args.answers) if args.answers else Answers()
    if args.gpu_gb is not None:
        answers = replace(answers, gpu_memory_gb=args.gpu_gb if args.gpu_gb > 0 else None)
    elif answers.gpu_memory_gb is None and not (args.answers and _mentions_gpu(args.answers)):
        answers = replace(answers, gpu_memory_gb=detect_gpu_gb())
    if args.model:
        answers = replace(answers, model=args.model)
    if args.queries_per_day is not None:
        from advisor.hosting_costs import parse_queries_per_day

        volume = parse_queries_per_day(args.queries_per_day, "--queries-per-day")
        answers = replace(answers, queries_per_day=volume)
    if args.results:
        from advisor.verdict import answers_from_results

        measured = answers_from_results(read_results(args.results))
        # the user's answers stand; the run adds its measured score and whether the task
        # has a corpus (a fact: without one, rag cannot run)
        answers = replace(
            answers, zero_shot_score=measured.zero_shot_score, has_corpus=measured.has_corpus
        )
        if not args.answers:  # the run also tells the data size and the knowledge need
            answers = replace(
                answers,
                labeled_examples=measured.labeled_examples,
                external_knowledge=measured.external_knowledge,
            )
    rec = recommend(answers)
    if args.save_answers:
        write_text_atomic(args.save_answers, dump_answers(answers))
    if args.json:
        print(json.dumps({"answers": answers.to_dict(), **rec.to_dict()}, indent=2))
        return 0
    _print(answers, rec)
    return 0


def _mentions_gpu(path: Path) -> bool:
    return "gpu_memory_gb" in path.read_text(encoding="utf-8")


def _print(answers, rec) -> None:
    from rich.console import Console

    from adaptwise.tui.shown import shown

    console = Console()
    hardware = answers.hardware()
    console.print(f"[bold]Recommendation[/] for {shown(answers.model)} on {hardware}\n")
    console.print("[bold]Try, in this order:[/]")
    for i, rung in enumerate(rec.ladder, 1):
        console.print(f"  {i}. [bold green]{rung.method}[/]")
        for reason in rung.reasons:
            console.print(f"       - {reason}")
    console.print("\n[bold]Ruled out:[/]")
    for rung in rec.ruled_out:
        console.print(f"  [red]{rung.method}[/]: {'; '.join(rung.reasons)}")
    if rec.warnings:
        console.print("\n[bold]Watch out:[/]")
        for warning in rec.warnings:
            console.print(f"  ! {warning}")
    if rec.hosting:
        console.print("\n[bold]Per month at your volume:[/]")
        console.print(f"  {rec.hosting}", highlight=False)
    methods = ",".join(m for m in rec.methods if "+" not in m)
    console.print(f"\nRun it: adaptwise run TASK.yaml --methods {methods}")
