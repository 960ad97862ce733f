"""`adaptwise index` and `adaptwise retrieve`: build a task's RAG index, and look into it.

Imports nothing heavy at module level: torch, faiss and LangChain load inside the handlers.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path


def register(subparsers, add_run_options) -> None:
    index = subparsers.add_parser(
        "index",
        help="build or refresh the RAG index of a task's corpus",
        description="Chunk, embed (only chunks not in the cache) and index the task's corpus; "
        "prints the index size, chunk count and build time.",
    )
    index.add_argument("task", type=Path, help="task YAML file")
    _common(index)
    index.add_argument(
        "--rebuild",
        action="store_true",
        help="replace an index built with another embedding model, or a damaged one",
    )
    index.set_defaults(handler=cmd_index)

    retrieve = subparsers.add_parser(
        "retrieve",
        help="show the passages the RAG index returns for a question",
        description="Print the top passages for a question, with scores and character spans "
        "(useful for debugging a corpus).",
    )
    retrieve.add_argument("task", type=Path, help="task YAML file")
    retrieve.add_argument("question", help="the question to retrieve passages for")
    retrieve.add_argument("--top", type=int, default=5, help="passages to show (default: 5)")
    retrieve.add_argument(
        "--mode", choices=("dense", "hybrid"), help="retrieval mode (default: the task's)"
    )
    _common(retrieve)
    retrieve.set_defaults(handler=cmd_retrieve)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedder", help="sentence-transformers model (default: all-MiniLM-L6-v2)")
    p.add_argument(
        "--index-dir",
        type=Path,
        help="index folder (default: $ADAPTWISE_INDEX_DIR/<task>, rag.index_dir, or "
        ".adaptwise/index next to the task file)",
    )


def cmd_index(args) -> int:
    from rich.console import Console

    from adaptwise.progress import RichProgress
    from experiments.embeddings import Embedder
    from experiments.task import load_task
    from rag.store import open_index

    task = load_task(args.task)
    with contextlib.ExitStack() as stack:
        state = {"ui": None, "done": 0}

        def progress(done: int, total: int) -> None:
            # The bar starts with the first embedded batch, so errors print as one clean line.
            if state["ui"] is None:
                state["ui"] = stack.enter_context(RichProgress())
                state["ui"].start(f"{task.name} · embedding chunks", total)
            state["ui"].advance(done - state["done"])
            state["done"] = done

        index, stats = open_index(
            task, Embedder(args.embedder), args.index_dir, rebuild=args.rebuild, progress=progress
        )
    info = index.info
    kind = info["kind"]
    if kind == "ivf":
        kind += f" ({info['nlist']} lists, {info['nprobe']} probed, recall@{info['recall_k']} "
        kind += f"vs exact {info['recall_vs_exact']:.3f})"
    from adaptwise.tui.shown import shown

    console = Console()
    verb = "built" if stats.built else "up to date"
    console.print(f"[bold]{shown(task.name)}[/]: index {verb} in {shown(index.folder)}")
    console.print(
        f"  {stats.n_docs} documents, {stats.n_chunks} chunks, {kind} index, "
        f"{stats.size_bytes / 1e6:.2f} MB"
    )
    links = stats.extra.get("skipped_links") or []
    if links:
        console.print(
            f"  skipped {len(links)} link(s) to files outside the corpus folder (e.g. "
            f"{links[0]}); copy the files into the corpus to index them",
            markup=False,
            highlight=False,
        )
    if stats.built:
        reused = stats.n_chunks - stats.embedded
        console.print(
            f"  {stats.total_s:.1f} s: chunking {stats.chunk_s:.1f} s, embedding "
            f"{stats.embed_s:.1f} s ({stats.embedded} embedded, {reused} from the cache), "
            f"indexing {stats.index_s:.2f} s"
        )
    else:
        console.print(f"  nothing to embed; reloaded in {stats.total_s:.2f} s")
    return 0


def cmd_retrieve(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from experiments.embeddings import Embedder
    from experiments.errors import AdaptwiseError
    from experiments.task import load_task
    from rag.settings import rag_settings
    from rag.store import open_index

    if args.top < 1:
        raise AdaptwiseError("--top must be at least 1")
    task = load_task(args.task)
    mode = args.mode or rag_settings(task).retrieval
    index, _ = open_index(task, Embedder(args.embedder), args.index_dir)
    hits = index.search([args.question], args.top, mode)[0]
    table = Table(title=f"{task.name}: top {len(hits)} passages ({mode})", show_lines=True)
    for column, justify in (("#", "right"), ("score", "right"), ("chunk", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    table.add_column("passage", overflow="fold")
    for hit in hits:
        c = hit.chunk
        table.add_row(
            str(hit.rank), f"{hit.score:.3f}", f"{c.id}\n[{c.start}:{c.end}]", c.text.strip()
        )
    Console().print(table)
    return 0
