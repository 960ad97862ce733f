"""`adaptwise report` and `adaptwise compare`: re-render a run's reports, and compare two runs.

Imports nothing heavy at module level: numpy, scipy and matplotlib load inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers, add_run_options) -> None:
    report = subparsers.add_parser(
        "report",
        help="re-render a run's report.md and report.html, or combine several runs' into one",
        description="Re-render report.md and report.html of a run folder from its results.json "
        "and predictions.jsonl (confidence intervals, paired tests, costs, the per-example "
        "matrix). With several run folders of the same task and eval rows (e.g. a hosted "
        "model's prompting and a small model's LoRA), write one report holding all their "
        "methods into --out. Prices given here override the runs' own (the task file's costs: "
        "section); where a served model's method is in the report, token prices price the "
        "served methods only.",
    )
    report.add_argument(
        "dirs", type=Path, nargs="+", metavar="DIR", help="run output folders (adaptwise run --out)"
    )
    report.add_argument("--out", type=Path, help="the combined report's folder (several DIRs)")
    report.add_argument(
        "--queries-per-day",
        help="add each method's cost per month at this many queries a day (over the task "
        "file's costs: queries_per_day:)",
    )
    report.add_argument("--overwrite", action="store_true", help="replace a combined --out")
    _stats_options(report)
    _price_options(report)
    report.set_defaults(handler=cmd_report)

    compare = subparsers.add_parser(
        "compare",
        help="compare two runs of the same task (e.g. before and after cleaning the data)",
        description="Per method in both runs: each metric in each run with its 95%% CI, the "
        "difference (DIR2 - DIR1) and a test: paired (McNemar for accuracy and exact match, "
        "else a paired bootstrap) when the method scored the same eval rows (matched by id), "
        "else an unpaired bootstrap.",
    )
    compare.add_argument("dir1", type=Path, help="the first run folder (the baseline)")
    compare.add_argument("dir2", type=Path, help="the second run folder")
    _stats_options(compare)
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(handler=cmd_compare)


def _stats_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the run's seed, else 0)")
    p.add_argument(
        "--resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)"
    )


def _price_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu-hour-price", type=float, help="price of one GPU hour (default 2.00)")
    p.add_argument("--cpu-hour-price", type=float, help="price of one CPU-machine hour (0.10)")
    p.add_argument("--prompt-token-price", type=float, help="price per 1k prompt tokens (0)")
    p.add_argument("--generated-token-price", type=float, help="price per 1k generated tokens (0)")
    p.add_argument("--currency", help="currency name shown with the prices (default: USD)")


def _check_stats_args(args) -> None:
    from experiments.errors import AdaptwiseError

    if args.resamples < 100:
        raise AdaptwiseError("--resamples must be at least 100")


def cmd_report(args) -> int:
    from experiments.errors import AdaptwiseError
    from experiments.report.costs import FLAGS, parse_prices
    from experiments.report.run_folder import load_run
    from experiments.report.write import write_reports

    _check_stats_args(args)
    overrides = {key: getattr(args, flag) for flag, key in FLAGS.items()}
    overrides = parse_prices({k: v for k, v in overrides.items() if v is not None}, "prices")
    if args.currency:
        overrides["currency"] = args.currency
    if args.queries_per_day is not None:
        from advisor.hosting_costs import parse_queries_per_day

        overrides["queries_per_day"] = parse_queries_per_day(
            args.queries_per_day, "--queries-per-day"
        )
    if len(args.dirs) > 1:
        return _combined_report(args, overrides)
    if args.out is not None:
        raise AdaptwiseError("--out is for several run folders; one is re-rendered in place")
    folder = args.dirs[0]
    results, records = load_run(folder)
    command = "report" if results.get("combined_from") else "run"
    write_reports(folder, results, records, None, args.seed, args.resamples, overrides, command)
    print(f"Written: {folder / 'report.md'}, {folder / 'report.html'}")
    return 0


def _combined_report(args, overrides: dict) -> int:
    from experiments.errors import AdaptwiseError
    from experiments.owned_files import check_replaceable
    from experiments.report.combine import combine
    from experiments.report.run_folder import load_run
    from experiments.report.write import write_combined

    if args.out is None:
        raise AdaptwiseError("several run folders make one report: give its folder with --out")
    resolved = [d.resolve() for d in args.dirs]
    twice = next((d for i, d in enumerate(args.dirs) if resolved[i] in resolved[:i]), None)
    if twice is not None:
        raise AdaptwiseError(f"{twice}: given twice; give each run folder once")
    check_replaceable(args.out, "report", args.overwrite, args.dirs)
    runs = [(d, *load_run(d)) for d in args.dirs]
    results, records = combine(runs)
    write_combined(args.out, results, records, overrides, args.seed, args.resamples)
    print(
        f"Written: {args.out / 'report.md'}, {args.out / 'report.html'} "
        f"({len(results['methods'])} methods from {len(runs)} runs)"
    )
    return 0


def cmd_compare(args) -> int:
    import json

    from experiments.report.run_comparison import compare_runs
    from experiments.report.run_folder import load_run

    _check_stats_args(args)
    first, second = load_run(args.dir1), load_run(args.dir2)
    seed = args.seed if args.seed is not None else 0
    result = compare_runs(
        first, second, seed, args.resamples, labels=(str(args.dir1), str(args.dir2))
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print_comparison(result)
    return 0


def _print_comparison(result: dict) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    from experiments.report.formatting import METRIC_TITLES, TEST_SHORT

    first, second = result["labels"]
    table = Table(title=f"{result['task']}: run 1 {first} vs run 2 {second}")
    for column, justify in (
        ("method", "left"),
        ("metric", "left"),
        ("run 1 [95% CI]", "right"),
        ("run 2 [95% CI]", "right"),
        ("difference [95% CI]", "right"),
        ("test", "left"),
        ("p", "right"),
        ("rows needed", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)
    notes = []
    for row in result["rows"]:
        a, b, t = row["first"], row["second"], row["test"]
        needed = "-" if t["significant"] or t["rows_needed"] is None else f"{t['rows_needed']:,}"
        style = "bold" if t["significant"] else None
        table.add_row(
            row["method"],
            METRIC_TITLES.get(row["metric"], row["metric"]),
            f"{a['estimate']:.3f} [{a['low']:.2f}, {a['high']:.2f}]",
            f"{b['estimate']:.3f} [{b['low']:.2f}, {b['high']:.2f}]",
            f"{t['diff']:+.3f} [{t['low']:+.2f}, {t['high']:+.2f}]",
            TEST_SHORT.get(t["test"], t["test"]),
            ("<0.001" if t["p"] < 0.001 else f"{t['p']:.3f}") + ("*" if t["significant"] else ""),
            needed,
            style=style,
        )
        note = f"{row['method']}: {row['note']}" if row["note"] else None
        if note and note not in notes:
            notes.append(note)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    console.print(f"run 1: {first}\nrun 2: {second}")
    console.print(
        f"Difference = run 2 - run 1. CIs: percentile bootstrap ({result['resamples']} "
        f"resamples, seed {result['seed']}); * p < 0.05. Rows needed: eval rows for 80% power "
        "at the observed difference."
    )
    for note in notes:
        console.print(f"note: {note}")
    if result["only_first"]:
        console.print(f"only in run 1: {', '.join(result['only_first'])}")
    if result["only_second"]:
        console.print(f"only in run 2: {', '.join(result['only_second'])}")
