"""`adaptwise data check | fix | convert | from-repo`: check, clean and build task data.

Only argparse is imported at module level; each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Exit status of `data check` when it finds a blocking problem (2 is for input it cannot read).
BLOCKING_EXIT = 1
CONVERT_FORMATS = ("alpaca", "sharegpt", "openai", "csv", "hf")


def register(sub, add_run_options) -> None:
    data = sub.add_parser(
        "data",
        help="check, fix and build task data (check, fix, convert, from-repo)",
        description="Check a task's data before spending compute on it, write a cleaned copy, "
        "convert other dataset formats into a task, or build a task from a repository.",
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    _add_check(data_sub)
    _add_fix(data_sub)
    _add_convert(data_sub)
    _add_repo(data_sub)


def _add_check(data_sub) -> None:
    check = data_sub.add_parser(
        "check",
        help="report format errors, duplicates, leakage, imbalance and more",
        description="Report every problem in a task's data. Exit status 0: nothing blocking; "
        f"{BLOCKING_EXIT}: blocking problems (unreadable rows, leakage); 2: the task file "
        "cannot be read.",
    )
    check.add_argument("task", type=Path, help="task YAML file")
    check.add_argument("--json", type=Path, help="also write the full report as JSON here")
    check.add_argument(
        "--max-length",
        type=int,
        help="fine-tuning max length in tokens (default: the task's finetune max_length, else "
        "the fine-tuning default)",
    )
    check.add_argument("--model", help="count tokens with this model's tokenizer")
    check.add_argument("--no-tokens", action="store_true", help="skip token lengths")
    check.set_defaults(handler=cmd_check)


def _add_fix(data_sub) -> None:
    fix = data_sub.add_parser(
        "fix",
        help="write a cleaned copy of a task (dedupe, standardise, drop leaked rows)",
        description="Write a new task into --out: unreadable rows dropped, outputs standardised, "
        "duplicates and near duplicates removed, inconsistent labels settled by majority, "
        "leaked train rows dropped; optionally re-split. The input is never edited.",
    )
    fix.add_argument("task", type=Path, help="task YAML file")
    fix.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    fix.add_argument(
        "--eval-fraction",
        type=float,
        help="pool train and eval and re-split, this share to eval (stratified by label)",
    )
    fix.add_argument("--seed", type=int, default=0, help="re-split seed (default: 0)")
    fix.add_argument(
        "--keep-near-duplicates", action="store_true", help="drop exact duplicates only"
    )
    fix.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    fix.set_defaults(handler=cmd_fix)


def _add_convert(data_sub) -> None:
    convert = data_sub.add_parser(
        "convert",
        help="turn Alpaca, ShareGPT, OpenAI chat, CSV or a saved HF dataset into a task",
        description="Convert a dataset into a task folder (task.yaml, train.jsonl, eval.jsonl).",
    )
    convert.add_argument("source", type=Path, help="file (or saved datasets folder) to convert")
    convert.add_argument("--from", dest="fmt", choices=CONVERT_FORMATS, required=True)
    convert.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    convert.add_argument("--kind", choices=("classification", "qa", "generation"), required=True)
    convert.add_argument(
        "--map",
        default="",
        help="csv/hf columns, e.g. input=question,output=answer (fields: id, instruction, "
        "input, output, context_ids; default: columns with those names or common aliases)",
    )
    convert.add_argument("--eval", dest="eval_source", type=Path, help="a separate eval file")
    convert.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="share held out for eval when there is no eval split (default: %(default)s)",
    )
    convert.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    convert.add_argument("--name", help="task name (default: the output folder's name)")
    convert.add_argument("--instruction", help="the task's instruction")
    convert.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    convert.set_defaults(handler=cmd_convert)


def _add_repo(data_sub) -> None:
    repo = data_sub.add_parser(
        "from-repo",
        help="build a task (raw text, template questions, corpus, held-out eval) from a repo",
        description="Collect a repository's code files and markdown pages (and optionally a "
        "pull-request export), chunk them to a token limit, and write a generation task: "
        "template questions per page and per file, raw.jsonl (raw-text rows for fine-tuning), "
        "corpus.jsonl (for RAG), and an eval set held out by document.",
    )
    repo.add_argument("path", type=Path, help="repository folder")
    repo.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    repo.add_argument("--prs", type=Path, help="pull-request export (JSON list of PRs)")
    repo.add_argument("--max-tokens", type=int, default=512, help="tokens per chunk (%(default)s)")
    repo.add_argument(
        "--max-file-kb", type=int, default=100, help="skip larger files (default: %(default)s)"
    )
    repo.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="share of documents held out for eval (default: %(default)s)",
    )
    repo.add_argument("--seed", type=int, default=0, help="hold-out seed (default: 0)")
    repo.add_argument("--date", help="snapshot date in the file questions (default: today)")
    repo.add_argument("--name", help="task name (default: the repository folder's name)")
    repo.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    repo.set_defaults(handler=cmd_from_repo)


def cmd_check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from experiments.atomic import write_text_atomic
    from experiments.data.checks import check_task
    from experiments.data.report import summary_lines
    from experiments.errors import AdaptwiseError

    if args.max_length is not None and args.max_length < 1:
        raise AdaptwiseError("--max-length must be at least 1")
    report = check_task(
        args.task, max_length=args.max_length, model=args.model, measure_tokens=not args.no_tokens
    )
    console = Console(highlight=False)
    for style, text in summary_lines(report):
        console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))
    if args.json:
        write_text_atomic(args.json, json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        console.print(f"Report: {args.json}")
    return BLOCKING_EXIT if report.blocking else 0


def cmd_fix(args: argparse.Namespace) -> int:
    from experiments.data.fix import fix_task

    summary = fix_task(
        args.task,
        args.out,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
        keep_near_duplicates=args.keep_near_duplicates,
        overwrite=args.overwrite,
    )
    kept = ", ".join(f"{n} {split}" for split, n in summary.kept.items())
    print(f"Wrote {args.out / 'task.yaml'}: {kept} rows")
    for reason, n in sorted(summary.counts().items()):
        print(f"  dropped {n} row(s): {reason}")
    if summary.changed:
        print(f"  standardised {len(summary.changed)} output(s)")
    print(f"Every change is listed in {args.out / 'fix.json'}; check it with:")
    print(f"  adaptwise data check {args.out / 'task.yaml'}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from experiments.data.columns import parse_mapping
    from experiments.data.convert import convert

    path, counts = convert(
        args.source,
        args.fmt,
        args.out,
        kind=args.kind,
        mapping=parse_mapping(args.map),
        eval_source=args.eval_source,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        name=args.name,
        instruction=args.instruction,
        overwrite=args.overwrite,
    )
    print(f"Wrote {path}: {counts['train']} train, {counts['eval']} eval rows")
    if counts.get("unlabelled"):
        print(
            f"Skipped {counts['unlabelled']} unlabelled rows (ClassLabel -1, Hugging Face's "
            "'no label'); give an eval split with labels (--eval) if eval came out empty"
        )
    return 0


def cmd_from_repo(args: argparse.Namespace) -> int:
    from experiments.data.from_repo import build_from_repo

    result = build_from_repo(
        args.path,
        args.out,
        prs=args.prs,
        max_tokens=args.max_tokens,
        max_file_bytes=args.max_file_kb * 1024,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        date=args.date,
        name=args.name,
        overwrite=args.overwrite,
    )
    print(f"Wrote {result.task_path}:")
    for line in result.lines():
        print(f"  {line}")
    return 0
