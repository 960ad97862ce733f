"""What the commands that run methods share: the run options every such command takes, the
options and the method list read from them, one task's run, and the results table printed after
it. Imports nothing heavy at module level."""

from __future__ import annotations

import argparse
from pathlib import Path

from adaptwise.api_options import api_run_options
from experiments.context import RunOptions
from experiments.precision import PRECISIONS
from experiments.prompting import PROMPTING

DEFAULT_METHODS = ",".join(PROMPTING)  # every prompting method


def add_run_options(p: argparse.ArgumentParser, limit: int = 0) -> None:
    p.add_argument(
        "--model",
        help="a local transformers folder, a .gguf file, or a hub id where a hub is reachable "
        "(default: the embedded SmolLM2-135M-Instruct); `run`: also openai:NAME, a served model",
    )
    p.add_argument(
        "--embedder",
        help="sentence-transformers model for example selection "
        "(default: the embedded all-MiniLM-L6-v2)",
    )
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument(
        "--k",
        type=int,
        default=RunOptions.k,
        help="few-shot examples per query (default: %(default)s)",
    )
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


def add_seeds_option(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--seeds", type=int, metavar="N", help=help_text)


def seeds_setting(args) -> int | None:
    """--seeds N: how many times each fine-tuning method trains (None: not given)."""
    if args.seeds is not None and args.seeds < 1:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError("--seeds must be at least 1")
    return args.seeds


def run_options(args):
    from experiments.context import RunOptions

    if args.limit is not None and args.limit < 0:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError("--limit must be 0 (all rows) or more")
    for name in ("k", "batch_size", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            from experiments.errors import AdaptwiseError

            raise AdaptwiseError(f"--{name.replace('_', '-')} must be at least 1")
    from adaptwise.launch import devices
    from experiments.distributed import world_size

    return RunOptions(
        devices=devices(args) or world_size(),
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
        **api_run_options(args),
    )


def parse_settings(items: list[str], flag: str = "--set") -> dict:
    """`["rank=8", "merge=true"]` -> `{"rank": "8", "merge": "true"}` (typed by the config)."""
    from experiments.errors import AdaptwiseError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdaptwiseError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} rank=8")
        out[key.strip()] = None if value.strip().lower() in ("none", "null") else value.strip()
    return out


def method_list(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError("--methods is empty; name at least one method")
    return names


def check_run(task_path: Path, methods: list[str], out: Path | None, options):
    """(task, output folder) after the checks that need no model: the task file, the methods
    and their settings, the folder. A bad one is one line, before anything loads (or, with
    --devices, before the processes start)."""
    from experiments.context import RunContext
    from experiments.run.registry import make_method
    from experiments.run.runner import claim_run_folder
    from experiments.task import load_task

    task = load_task(task_path)
    # An unknown method is one line, before any folder is made.
    made = [make_method(name, {"k": options.k, **options.extra}) for name in methods]
    out = out or Path("runs") / task.folder_name
    claim_run_folder(out, task, record=False)  # refuse a folder of the user's, first thing
    ctx = RunContext(task, options)
    for method in made:
        method.check(ctx)
    return task, out


def run_one(
    task_path: Path, methods: list[str], out: Path | None, options, ui, rerun=False
) -> tuple[Path, dict]:
    """Run `methods` on the task; its output folder and what the run did (kept, scored and
    failed methods, whether it wrote files: experiments/run/runner.py run_task's `_run`)."""
    from experiments.run.runner import run_task

    task, out = check_run(task_path, methods, out, options)
    scored = len(task.scored_rows(options.limit))
    subset = f" (scoring the first {scored}; --limit 0 for all)" if scored < len(task.eval) else ""
    sizes = f"{len(task.train)} train, {len(task.eval)} eval rows"
    ui.log(headline(task, f"{sizes}{subset}"))
    ui.log(f"  results -> {out}")
    results = run_task(task, methods, out, options, progress=ui, rerun=rerun)
    outcome = results["_run"]  # and what it wrote, for the table: no re-read of results.json
    outcome["results"] = {k: v for k, v in results.items() if not k.startswith("_")}
    return out, outcome


def headline(task, rest: str):
    """`task-name (kind): rest`, the name in bold and shown as plain text."""
    from rich.text import Text

    from experiments.plain_text import plain

    return Text.assemble((plain(task.name, one_line=True), "bold"), f" ({task.kind}): {rest}")


def show_run(out: Path, outcome: dict) -> int:
    """The results table and what was written; the exit status: 1 with one line when every
    method this run tried failed (and none was kept), else 0."""
    import sys

    from experiments.distributed import is_main

    if not is_main():
        return 0  # the first process speaks for all, and its status is the run's
    show_report(out, outcome)
    if outcome["failed"] and not (outcome["scored"] or outcome["kept"]):
        print(
            f"adaptwise: error: every method failed ({', '.join(outcome['failed'])}); nothing "
            f'was scored; the reasons are above and under "failed" in {out / "results.json"}',
            file=sys.stderr,
        )
        return 1
    return 0


def show_report(out: Path, outcome: dict | None = None) -> None:
    """A compact table of results.json for the terminal; report.md has every column. With the
    run's `outcome`, also what it wrote (nothing, when every method was kept). Only the first
    of several processes prints it."""

    from experiments.distributed import is_main

    if not is_main():
        return

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from experiments.plain_text import plain
    from experiments.report.formatting import METRIC_TITLES

    results = (outcome or {}).get("results")
    if results is None:  # a climb's folder, which its climb wrote
        from experiments.run_files import read_results

        results = read_results(out)
        if results is None:
            return
    task, methods = results["task"], results["methods"]
    title = f"{plain(task['name'], True)} ({task['kind']}, {task['n_eval']} eval rows)"
    table = Table(title=Text(title))
    table.add_column("method", no_wrap=True)
    metric_names = list(dict.fromkeys(k for m in methods.values() for k in m["metrics"]))
    for name in metric_names:
        table.add_column(METRIC_TITLES.get(name, name), justify="right")
    for column in ("s / example", "prompt tok", "peak MB"):
        table.add_column(column, justify="right")
    primary = [m["metrics"].get(task["metric"]) for m in methods.values()]
    best = max((v for v in primary if v is not None), default=None)
    for name, m in methods.items():
        cells = [f"{m['metrics'][k]:.3f}" if k in m["metrics"] else "n/a" for k in metric_names]
        style = (
            "bold green" if best is not None and m["metrics"].get(task["metric"]) == best else None
        )
        table.add_row(
            Text(plain(name, True)),
            *cells,
            f"{m['inference_s_per_example']:.2f}",
            f"{m['prompt_tokens_mean']:.0f}",
            f"{m['peak_memory_mb']:.0f}",
            style=style,
        )
    console = Console()
    console.print(table)
    from experiments.report.seed_spread import spread

    for name, s in spread(methods, task["metric"]).items():  # trained over seeds
        each = ", ".join(f"{v:.3f}" for v in s["scores"])
        line = f"{name}: {len(s['scores'])} seeds ({each}), mean {s['mean']:.3f}, sd {s['sd']:.3f}"
        console.print(plain(f"{line}; the table shows the first (report.md: Seeds)"), markup=False)
    for name, failure in (results.get("failed") or {}).items():
        estimate = failure.get("estimate_gb")
        about = f" (estimate {estimate:.1f} GB)" if estimate is not None else ""
        console.print(
            plain(
                f"{name}: {failure.get('status', 'failed')}{about}; "
                f"{failure.get('suggestion') or failure.get('message', '')}"
            ),
            markup=False,
            highlight=False,
        )
    if outcome is None:  # a climb says what it wrote itself
        return
    if outcome["written"]:
        console.print(
            f"Written: {out}/results.json, predictions.jsonl, report.md and report.html "
            "(confidence intervals, significance, costs, per-row matrix)\n"
        )
    else:
        console.print(
            f"Nothing written: every method was kept from the earlier run in {out} "
            "(--rerun runs them again)\n"
        )
