"""`adaptwise serve EXPORT_DIR` (llama.cpp's server on a GGUF export) and `adaptwise verify
RUN_DIR --method NAME --model openai:NAME` (the served model against the run's predictions).

Nothing heavy is imported at module level (`adaptwise --help` stays fast)."""

from __future__ import annotations

from pathlib import Path

from experiments.export.verify import DEFAULT_CONCURRENCY, DEFAULT_MIN_AGREEMENT


def register(subparsers, add_run_options) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve a GGUF export with llama.cpp's own server (OpenAI-compatible, greedy)",
        description="Start llama.cpp's llama-server on an export folder: the base GGUF with the "
        "LoRA adapter (--lora), or the merged/full model; for a prompting or RAG recipe of the "
        "embedded model, that model's GGUF. It listens on 127.0.0.1, needs no network, and "
        "prints the base URL to give `adaptwise verify` and `run --model openai:NAME`. Ctrl+C "
        "stops it.",
    )
    serve.add_argument("export_dir", type=Path, metavar="EXPORT_DIR", help="an export folder")
    serve.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    serve.add_argument(
        "--merged",
        action="store_true",
        help="serve the merged model instead of the base with the adapter",
    )
    serve.add_argument("--threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    serve.add_argument(
        "--chat-template",
        metavar="NAME",
        help="a llama.cpp built-in chat template to serve with instead of the GGUF's own "
        "(chatml, llama3, ...): to see what `verify` says of a mismatched template",
    )
    serve.set_defaults(handler=cmd_serve)

    verify = subparsers.add_parser(
        "verify",
        help="check that a served model answers a run's eval rows as the measured method did",
        description="Send the method's eval rows to the served endpoint with exactly the prompts "
        "the run used (examples and passages included) and compare each answer with the run's "
        "predictions.jsonl: agreement, the metric served vs measured with a paired test, the "
        "largest log-probability difference where the server gives prompt log-probs, and the "
        "rows that differ. Exit 0 when agreement reaches --min-agreement, else 1 with the likely "
        "cause (chat template, adapter not applied, quantization). Writes verify.json and a "
        "section of the run's report.",
    )
    verify.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run's output folder")
    verify.add_argument("--method", required=True, help="the run's method the server serves")
    verify.add_argument("--model", required=True, help="the served model, as openai:NAME")
    verify.add_argument(
        "--base-url", help="the endpoint, e.g. http://127.0.0.1:8080/v1 (default: OPENAI_BASE_URL)"
    )
    verify.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help="the share of rows that must get the run's answer (default: %(default)s)",
    )
    verify.add_argument("--limit", type=int, default=0, help="the first N rows only (0: all)")
    verify.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="requests in flight at once (default: %(default)s)",
    )
    verify.add_argument("--no-cache", action="store_true", help="ask the server again")
    verify.set_defaults(handler=cmd_verify)


def cmd_serve(args) -> int:
    import signal
    import tempfile
    import threading

    from rich.console import Console

    from experiments.export.serve import server_for_export

    console = Console(stderr=True)
    server, what = server_for_export(
        args.export_dir,
        merged=args.merged,
        port=args.port,
        threads=args.threads,
        chat_template=args.chat_template,
    )
    stopped = threading.Event()
    with tempfile.TemporaryDirectory(prefix="adaptwise-serve-") as logs:
        server.start(Path(logs))
        try:
            console.print(
                f"serving {what} at {server.base_url} as model {server.alias!r} "
                f"(llama.cpp's llama-server; Ctrl+C stops it)",
                markup=False,
                highlight=False,
            )
            print(server.base_url, flush=True)  # stdout: the URL alone, for scripts
            signal.signal(signal.SIGTERM, lambda *_a: stopped.set())
            while not stopped.wait(0.5):
                if server.process.poll() is not None:
                    console.print(f"llama-server stopped (exit {server.process.returncode})")
                    return 1
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


def cmd_verify(args) -> int:
    import sys

    from rich.console import Console

    from adaptwise.progress import RichProgress
    from experiments.export.verify import verify_method, write_verification
    from experiments.plain_text import plain

    console = Console(stderr=True)
    with RichProgress() as ui:
        verification = verify_method(
            args.run_dir,
            args.method,
            args.model,
            args.base_url,
            concurrency=args.concurrency,
            cache=not args.no_cache,
            min_agreement=args.min_agreement,
            limit=args.limit or None,
            log=ui.log,
            start=ui.start,
            progress=ui.advance,
        )
    write_verification(args.run_dir, verification)
    for row in verification.differing[:10]:
        console.print(
            f"  {plain(row['id'], one_line=True)}: measured "
            f"{plain(row['measured'], one_line=True)!r}, served "
            f"{plain(row['served'], one_line=True)!r} (gold {plain(row['gold'], one_line=True)!r})",
            markup=False,
            highlight=False,
        )
    if len(verification.differing) > 10:
        console.print(f"  ... {len(verification.differing) - 10} more in verify.json")
    line = plain(verification.line(), one_line=True)
    print(line, file=sys.stdout if verification.passed else sys.stderr, flush=True)
    console.print(f"Written: {Path(args.run_dir) / 'verify.json'} and the run's report")
    return 0 if verification.passed else 1
