"""The `adaptwise` command. Heavy libraries are imported inside the commands that need them,
so that `adaptwise --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from adaptwise.running import add_run_options

# Each area's subcommands live in their own module with `register(subparsers, add_run_options)`,
# which adds parsers and sets `handler=` on them. Those modules must import nothing heavy.
COMMAND_MODULES: list[str] = [
    "adaptwise.commands_run",
    "adaptwise.commands_advisor",
    "adaptwise.commands_estimate",
    "adaptwise.commands_data",
    "adaptwise.commands_rag",
    "adaptwise.commands_finetune",
    "adaptwise.commands_report",
    "adaptwise.commands_plan",
    "adaptwise.commands_export",
    "adaptwise.commands_serve",
    "adaptwise.commands_predict",
]


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

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, add_run_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    from experiments.startup import start_process

    start_process()  # first: offline, no hub kernels, before any library is imported
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from experiments.errors import describe_failure
    from experiments.plain_text import plain

    debug = args.debug or os.environ.get("ADAPTWISE_DEBUG", "") not in ("", "0")
    who = _who()
    try:
        if getattr(args, "handler", None):
            return args.handler(args)
    except KeyboardInterrupt:
        kept = getattr(args, "interrupted", "finished methods' results are kept")
        print(f"\nadaptwise: interrupted; {kept}", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: one line, the traceback only when asked for
        if debug:
            raise
        text, code = describe_failure(exc)
        hint = " (rerun with --debug to see where, and report it)" if code == 1 else ""
        print(f"{who}: error: {plain(text, one_line=True)}{hint}", file=sys.stderr)
        return code
    parser.error(f"unknown command {args.command}")
    return 2


def _who() -> str:
    """The name errors go under: adaptwise, or which of a run's other processes speaks (each
    says its own error; the first one speaks as adaptwise)."""
    from experiments.distributed import rank, world_size

    return f"adaptwise (process {rank()} of {world_size()})" if rank() else "adaptwise"


if __name__ == "__main__":
    sys.exit(main())
