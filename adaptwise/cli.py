"""The `adaptwise` command. Heavy libraries are imported inside the commands that need them,
so that `adaptwise --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from experiments.precision import PRECISIONS

# Each area's subcommands live in their own module with `register(subparsers, add_run_options)`,
# which adds parsers and sets `handler=` on them. Those modules must import nothing heavy.
COMMAND_MODULES: list[str] = [
    "adaptwise.commands_advisor",
    "adaptwise.commands_estimate",
    "adaptwise.commands_data",
    "adaptwise.commands_rag",
    "adaptwise.commands_finetune",
    "adaptwise.commands_report",
    "adaptwise.commands_plan",
]

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
# The demo scores 40 of each task's eval rows so that it finishes in about 5 minutes on 2 CPU
# cores (measured in the README); `--limit 0` scores all of them.
DEMO_LIMIT = 40
DEFAULT_METHODS = "zero-shot,few-shot-random,few-shot-jaccard,few-shot-embedding,few-shot-mmr"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptwise",
        description="Decide how to adapt an LLM to your domain, then prove it: run zero-shot, "
        "few-shot, RAG and fine-tuning on your own eval set and compare them.",
    )
    from adaptwise import __version__

    parser.add_argument("--version", action="version", version=f"adaptwise {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (also: ADAPTWISE_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="score methods on a task's eval set",
        description="Score methods on a task's eval set; writes results.json, "
        "predictions.jsonl and report.md into --out.",
    )
    run.add_argument("task", type=Path, help="task YAML file")
    run.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated methods (default: %(default)s). Prompting: zero-shot, "
        "few-shot-random, few-shot-jaccard, few-shot-embedding, few-shot-mmr; retrieval: rag, "
        "rag-hybrid, rag-dense; fine-tuning: lora, qlora, full-ft; both: rag+lora, "
        "rag+qlora, rag+full-ft, raft. Append -kN to a few-shot or rag method to set its "
        "number of examples or passages, e.g. few-shot-jaccard-k8",
    )
    run.add_argument("--out", type=Path, help="output folder (default: runs/<task name>)")
    run.add_argument(
        "--rerun",
        nargs="?",
        const="all",
        metavar="METHODS",
        help="run again methods whose results --out already holds from a run with the same "
        "rows and options (kept otherwise); alone: all of them, or a comma-separated list",
    )
    _add_run_options(run)
    climb = run.add_argument_group(
        "ladder, sweeps and learning curves (README: Climbing the ladder, sweeps and learning "
        "curves)"
    )
    climb.add_argument(
        "--finetune",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fine-tuning setting for lora / qlora / full-ft, e.g. --finetune max_steps=3 "
        "(repeatable; as `adaptwise finetune --set`)",
    )
    climb.add_argument(
        "--ladder",
        action="store_true",
        help="climb the plan's ladder (adaptwise plan) in order instead of --methods; stop at "
        "the first method whose 95%% CI lower bound meets --target, or on --budget",
    )
    climb.add_argument("--target", help="with --ladder: METRIC=VALUE, e.g. accuracy=0.8")
    climb.add_argument(
        "--budget", help="with --ladder or --sweep: a time budget, e.g. 30m, 2h, 1h30m"
    )
    climb.add_argument(
        "--data-fractions",
        metavar="F1,F2,...",
        help="learning curve: score --methods on nested seeded subsets of train of these "
        "fractions, e.g. 0.25,0.5,1.0",
    )
    climb.add_argument(
        "--sweep",
        nargs="+",
        metavar="METHOD.SETTING=V1,V2",
        help="grid over fine-tuning settings, e.g. --sweep lora.rank=8,16 "
        "lora.learning_rate=1e-4,2e-4; ranked on validation loss, the winner scored on eval",
    )

    setup = sub.add_parser(
        "setup",
        help="prepare the embedded models (run once by install.sh)",
        description="Convert the embedded SmolLM2 GGUF into a trainable checkpoint in the cache "
        "and check that the embedded embedding model loads.",
    )
    setup.add_argument("--model", help="prepare this model instead (folder, .gguf or hub id)")

    demo = sub.add_parser(
        "demo",
        help="run the comparison on the two shipped demo tasks",
        description="Run zero-shot and the four few-shot selectors on the demo tasks "
        f"shipped in {DEMO_DIR}.",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="default: %(default)s")
    demo.add_argument("--methods", default=DEFAULT_METHODS, help="default: %(default)s")
    _add_run_options(demo, limit=DEMO_LIMIT)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, _add_run_options)
    return parser


def _add_run_options(p: argparse.ArgumentParser, limit: int = 0) -> None:
    p.add_argument(
        "--model",
        help="a local transformers folder, a .gguf file, or a hub id where a hub is reachable "
        "(default: the embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--embedder",
        help="sentence-transformers model for example selection "
        "(default: the embedded all-MiniLM-L6-v2)",
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--k", type=int, default=4, help="few-shot examples per query (default: 4)")
    p.add_argument(
        "--limit",
        type=int,
        default=limit,
        help="score only the first N eval rows (0: all; default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="generation batch (default: 16)")
    p.add_argument("--max-new-tokens", type=int, help="default: 20 for qa, 128 for generation")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="rank labels by contextually calibrated scores (Zhao et al. 2021); raw and "
        "calibrated are then reported side by side (costs about 2x per few-shot row)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="weights and compute for scoring, generation and training: auto (default, or the "
        "task file's precision:) is bf16 on a GPU that has it, fp16 on one that does not, fp32 "
        "on a CPU",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model's own code to run (off by default)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from experiments.errors import AdaptwiseError, describe_os_error, is_out_of_memory

    debug = args.debug or os.environ.get("ADAPTWISE_DEBUG", "") not in ("", "0")
    from experiments.quiet import quiet_libraries

    quiet_libraries()
    try:
        if getattr(args, "handler", None):
            return args.handler(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "setup":
            return cmd_setup(args)
    except AdaptwiseError as exc:
        if debug:
            raise
        print(f"adaptwise: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nadaptwise: interrupted; finished methods' results are kept", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            raise
        print(f"adaptwise: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # the boundary: one line, the traceback only when asked for
        if debug:
            raise
        if is_out_of_memory(exc):
            print(
                "adaptwise: error: out of memory; lower --batch-size or --limit, or use a "
                "smaller --model",
                file=sys.stderr,
            )
            return 2
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"adaptwise: error: unexpected {type(exc).__name__}: {first} (rerun with --debug "
            "to see where, and report it)",
            file=sys.stderr,
        )
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


def _options(args):
    from experiments.context import RunOptions

    if args.limit is not None and args.limit < 0:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError("--limit must be 0 (all rows) or more")
    for name in ("k", "batch_size", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            from experiments.errors import AdaptwiseError

            raise AdaptwiseError(f"--{name.replace('_', '-')} must be at least 1")
    return RunOptions(
        model=args.model,
        embedder=args.embedder,
        seed=args.seed,
        k=args.k,
        calibrate=args.calibrate,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit or None,
        trust_remote_code=args.trust_remote_code,
        precision=getattr(args, "precision", None),
    )


def _methods(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError("--methods is empty; name at least one method")
    return names


def _run_one(
    task_path: Path, methods: list[str], out: Path | None, options, ui, rerun=False
) -> Path:
    from experiments.methods import make_method
    from experiments.runner import claim_run_folder, run_task
    from experiments.task import load_task

    task = load_task(task_path)
    for name in methods:  # an unknown method is one line, before any folder is made
        make_method(name, {"k": options.k, **options.extra})
    out = out or Path("runs") / task.folder_name
    claim_run_folder(out, task, record=False)  # refuse a folder of the user's, first thing
    scored = min(options.limit or len(task.eval), len(task.eval))
    subset = f" (scoring the first {scored}; --limit 0 for all)" if scored < len(task.eval) else ""
    sizes = f"{len(task.train)} train, {len(task.eval)} eval rows"
    ui.log(f"[bold]{task.name}[/] ({task.kind}): {sizes}{subset}")
    ui.log(f"  results -> {out}")
    run_task(task, methods, out, options, progress=ui, rerun=rerun)
    return out


def cmd_run(args) -> int:
    from adaptwise.commands_finetune import parse_settings
    from adaptwise.progress import RichProgress

    options = _options(args)
    from experiments.errors import AdaptwiseError

    settings = parse_settings(args.finetune, flag="--finetune")
    if settings:
        options.extra["finetune"] = settings
    if args.ladder or args.sweep or args.data_fractions:
        return _cmd_climb(args, options)
    for flag in ("target", "budget"):
        if getattr(args, flag):
            raise AdaptwiseError(f"--{flag} needs --ladder (or, for --budget, --sweep)")
    methods = _methods(args.methods)
    rerun = _rerun(args.rerun, methods)
    with RichProgress() as ui:
        out = _run_one(args.task, methods, args.out, options, ui, rerun=rerun)
    _show_report(out)
    return 0


def _rerun(value: str | None, methods: list[str]) -> bool | set[str]:
    """--rerun: absent False, alone True, else the named methods (each one of --methods)."""
    if value is None:
        return False
    if value == "all":
        return True
    names = {m.strip() for m in value.split(",") if m.strip()}
    unknown = sorted(names - set(methods))
    if unknown:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError(f"--rerun {unknown[0]}: not one of --methods ({', '.join(methods)})")
    return names


def _cmd_climb(args, options) -> int:
    """`run --ladder`, `run --sweep` and `run --data-fractions` (advisor/planning/: ladder.py,
    sweep.py, learning_curve.py)."""
    from advisor.planning.plan import parse_budget, parse_target
    from experiments.errors import AdaptwiseError
    from experiments.task import load_task

    modes = [
        f
        for f, on in (
            ("--ladder", args.ladder),
            ("--sweep", args.sweep),
            ("--data-fractions", args.data_fractions),
        )
        if on
    ]
    if len(modes) > 1:
        raise AdaptwiseError(f"{' and '.join(modes)}: give one of them per run")
    if args.target and not args.ladder:
        raise AdaptwiseError("--target needs --ladder")
    if args.budget and args.data_fractions:
        raise AdaptwiseError("--budget applies to --ladder and --sweep, not --data-fractions")
    if args.ladder and args.methods != DEFAULT_METHODS:
        raise AdaptwiseError("--methods and --ladder: the ladder's methods come from the plan")
    budget_s = parse_budget(args.budget) if args.budget else None
    fractions = None
    if args.data_fractions:
        from advisor.planning.learning_curve import parse_fractions

        fractions = parse_fractions(args.data_fractions)
    sweep = None
    if args.sweep:
        from advisor.planning.sweep import parse_sweep

        sweep = parse_sweep(args.sweep)
    task = load_task(args.task)
    target = parse_target(args.target, task.kind) if args.target else None
    out = args.out or Path("runs") / task.folder_name
    from adaptwise.progress import RichProgress
    from experiments.runner import claim_run_folder

    claim_run_folder(out, task, record=False)

    with RichProgress() as ui:
        ui.log(f"[bold]{task.name}[/] ({task.kind}): results -> {out}")
        if args.ladder:
            from advisor.planning.ladder import run_ladder
            from advisor.planning.planner import make_plan

            plan = make_plan(
                task,
                limit=options.limit,
                target=target,
                budget_s=budget_s,
                model=options.model,
                log=ui.log,
                finetune_settings=options.extra.get("finetune"),
                precision=options.precision,
            )
            record = run_ladder(task, plan, out, options, target, budget_s, progress=ui)
        elif sweep:
            from advisor.planning.sweep import run_sweep

            method, grid = sweep
            record = run_sweep(task, method, grid, out, options, budget_s, progress=ui)
        else:
            from advisor.planning.learning_curve import run_learning_curve

            methods = _methods(args.methods)
            record = run_learning_curve(task, methods, fractions, out, options, progress=ui)
    from advisor.planning.stored import read_results

    if (read_results(out) or {}).get("methods"):
        _show_report(out)
    _print_climb(record)
    print(f"Written: {out}/results.json, report.md, report.html")
    return 0


def _print_climb(record: dict) -> None:
    if "rungs" in record:
        from experiments.report.markdown import estimate_cell, interval_text

        for r in record["rungs"]:
            print(
                f"  {r['method']:<22} {r.get('reason') or r['status']:<48} "
                f"{interval_text(r.get('interval')):<24} "
                f"est/measured {estimate_cell(r.get('estimate_s'), r.get('measured_s'))}"
            )
    elif "trials" in record:
        for t in record["trials"]:
            loss = t.get("best_val_loss")
            shown = "-" if loss is None else f"{loss:.4f}"
            print(f"  #{t.get('rank') or '-'} {t['name']:<40} val loss {shown}  {t['reason']}")
    else:
        for m, v in record.get("verdicts", {}).items():
            print(f"  {m}: {v.get('message')}")
    if record.get("message"):
        print(record["message"])


def cmd_demo(args) -> int:
    from adaptwise.progress import RichProgress
    from experiments.errors import AdaptwiseError

    tasks = sorted(DEMO_DIR.glob("*/task.yaml"))
    if not tasks:
        raise AdaptwiseError(f"no demo tasks found in {DEMO_DIR}; run from a clone of adaptwise")
    options = _options(args)
    methods = _methods(args.methods)
    outs = []
    with RichProgress() as ui:
        for task_path in tasks:
            outs.append(_run_one(task_path, methods, args.out / task_path.parent.name, options, ui))
    for out in outs:
        _show_report(out)
    return 0


def cmd_setup(args) -> int:
    import time

    from experiments.embeddings import Embedder
    from experiments.models import resolve_checkpoint

    start = time.perf_counter()
    checkpoint, name = resolve_checkpoint(args.model)
    print(f"chat model {name}: {checkpoint}")
    vectors = Embedder().encode(["adaptwise setup check"])
    print(f"embedding model all-MiniLM-L6-v2: {vectors.shape[1]} dimensions")
    print(f"ready in {time.perf_counter() - start:.1f} s")
    return 0


def _show_report(out: Path) -> None:
    """A compact table of results.json for the terminal; report.md has every column."""
    import json

    from rich.console import Console
    from rich.table import Table

    from experiments.report.markdown import METRIC_TITLES

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    task, methods = results["task"], results["methods"]
    table = Table(title=f"{task['name']} ({task['kind']}, {task['n_eval']} eval rows)")
    table.add_column("method", no_wrap=True)
    metric_names = list(next(iter(methods.values()))["metrics"]) if methods else []
    for name in metric_names:
        table.add_column(METRIC_TITLES.get(name, name), justify="right")
    for column in ("s / example", "prompt tok", "peak MB"):
        table.add_column(column, justify="right")
    best = max((m["metrics"][task["metric"]] for m in methods.values()), default=None)
    for name, m in methods.items():
        cells = [f"{m['metrics'][k]:.3f}" for k in metric_names]
        style = "bold green" if m["metrics"][task["metric"]] == best else None
        table.add_row(
            name,
            *cells,
            f"{m['inference_s_per_example']:.2f}",
            f"{m['prompt_tokens_mean']:.0f}",
            f"{m['peak_memory_mb']:.0f}",
            style=style,
        )
    console = Console()
    console.print(table)
    for name, failure in (results.get("failed") or {}).items():
        estimate = failure.get("estimate_gb")
        about = f" (estimate {estimate:.1f} GB)" if estimate is not None else ""
        console.print(
            f"{name}: {failure.get('status', 'failed')}{about}; "
            f"{failure.get('suggestion') or failure.get('message', '')}",
            markup=False,
            highlight=False,
        )
    console.print(
        f"Written: {out}/results.json, predictions.jsonl, report.md and report.html "
        "(confidence intervals, significance, costs, per-row matrix)\n"
    )


if __name__ == "__main__":
    sys.exit(main())
