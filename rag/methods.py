"""The `rag` methods: retrieve top-k chunks of the task's corpus, put them as numbered passages
before the question, and answer; scored by the runner like every other method.

Names: `rag` (k from the task's rag.k, default 3), `rag-k5`, `rag-hybrid`, `rag-hybrid-k5`,
`rag-dense-k5`. Importing this module registers them with `experiments.methods`.
"""

from __future__ import annotations

import re
import time

from experiments.context import RunContext
from experiments.errors import TaskError
from experiments.methods import (
    Method,
    Prediction,
    Progress,
    generate_answers,
    score_labels,
)
from experiments.metrics import normalize_answer
from experiments.task import Row
from rag.retrieval_metrics import MRR_DEPTH, grounding, retrieval_metrics
from rag.settings import rag_settings

PASSAGES_INTRO = "Answer using these passages."
_NAME = re.compile(r"rag(?:-(dense|hybrid))?(?:-k(\d+))?")


def format_passages(texts: list[str]) -> str:
    """Numbered passages, the closest first, then the cue for the question."""
    body = "\n\n".join(f"[{i}] {' '.join(t.split())}" for i, t in enumerate(texts, 1))
    return f"{PASSAGES_INTRO}\n\n{body}\n\nQuestion:"


def check_corpus(task, method: str) -> None:
    """A TaskError naming the task file when `method` would retrieve from a corpus it lacks."""
    if task.corpus is None:
        raise TaskError(
            f"{task.path}: method {method!r} retrieves passages, and the task has no corpus; add "
            "`corpus: docs/` (a folder of .txt/.md files, or a .jsonl of {id, text}) to the task "
            "file"
        )


class RagMethod(Method):
    runs_on_api = True
    retrieves = True

    def __init__(self, name: str, k: int | None, mode: str | None) -> None:
        self.name = name
        self.k_option = k
        self.mode_option = mode
        self.k = k or 0
        self.mode = mode or "dense"
        self.index = None
        self.build: dict = {}
        self.shots = 0
        self.selector = None
        self.examples: list[Row] = []
        self._rankings: dict[str, list[str]] = {}
        self._passages: dict[str, list[str]] = {}
        self.description = "retrieved passages before the question"

    def check(self, ctx: RunContext) -> None:
        """No corpus, or a bad rag: setting, is one line before any model loads."""
        check_corpus(ctx.task, self.name)
        rag_settings(ctx.task)

    def prepare(self, ctx: RunContext) -> None:
        from rag.store import open_index

        settings = rag_settings(ctx.task)
        started = time.perf_counter()
        index, stats = open_index(ctx.task, ctx.embedder, settings=settings)
        verb = "built" if stats.built else "reloaded"
        ctx.log(
            f"  rag index {verb}: {stats.n_chunks} chunks from {stats.n_docs} documents, "
            f"{stats.embedded} embedded now, {time.perf_counter() - started:.1f} s"
        )
        self.build = {
            "index_kind": index.info["kind"],
            "index_chunks": stats.n_chunks,
            "index_built": stats.built,
            "chunks_embedded": stats.embedded,
            "index_recall_vs_exact": index.info["recall_vs_exact"],
        }
        self.use_index(ctx, index, settings)

    def use_index(self, ctx: RunContext, index, settings) -> None:
        """Retrieve from `index` with `settings` (k, retrieval mode, worked examples): the rest
        of `prepare` once the index is open; an exported recipe calls it with its own index."""
        self.index = index
        self.k = self.k_option or settings.k
        self.mode = self.mode_option or settings.retrieval
        self.shots = settings.shots
        self.description = (
            f"top-{self.k} passages ({self.mode} retrieval) before the question, after "
            f"{self.shots} worked examples that answer from a passage"
        )
        if self.shots and ctx.task.train:
            self._prepare_examples(ctx)

    def _prepare_examples(self, ctx: RunContext) -> None:
        """Train questions shown with a passage that holds their answer (RAFT-style
        demonstrations): a small model learns from them to copy the answer out of a passage."""
        from experiments.selectors import make_selector

        train = ctx.task.train
        hits = self.index.search([r.text for r in train], 3, self.mode, encoder=ctx.questions)
        self.examples = []
        for row, row_hits in zip(train, hits):
            gold = normalize_answer(row.output)
            best = next((h for h in row_hits if gold in normalize_answer(h.chunk.text)), None)
            best = best or row_hits[0]
            content = f"{format_passages([best.chunk.text])}\n\n{row.text}"
            self.examples.append(Row(row.id, ({"role": "user", "content": content},), row.output))
        pool = [{"input": r.text, "output": r.output} for r in train]
        self.selector = make_selector(
            "embedding", pool, k=min(self.shots, len(train)), seed=ctx.seed, embedder=ctx.questions
        )
        self.selector.prepare()

    def prompts(self, ctx: RunContext, rows: list[Row]) -> tuple[list, list]:
        """Each row's prompt (worked examples, then its retrieved passages and the question)
        and its hits; an exported recipe (experiments/export/recipe.py) rebuilds prompts
        through this too."""
        hits = self.index.search(
            [r.text for r in rows], max(self.k, MRR_DEPTH), self.mode, encoder=ctx.questions
        )
        fmt = ctx.prompt_format
        if self.selector is not None:
            picks = self.selector.select_many([r.text for r in rows])
        else:
            picks = [[] for _ in rows]
        prompts = []
        for row, row_hits, pick in zip(rows, hits, picks):
            self._rankings[row.id] = [h.chunk.doc_id for h in row_hits]
            self._passages[row.id] = [h.chunk.text for h in row_hits[: self.k]]
            examples = [self.examples[i] for i in reversed(pick)]  # closest next to the query
            context = format_passages(self._passages[row.id])
            prompts.append(fmt.build(examples, row.messages, context=context))
        return prompts, hits

    def predict(self, ctx: RunContext, rows: list[Row], progress: Progress) -> list[Prediction]:
        fmt = ctx.prompt_format
        prompts, hits = self.prompts(ctx, rows)
        if ctx.task.kind == "classification":
            content_free = [fmt.content_free([]) if ctx.calibrate else [] for _ in rows]
            preds = score_labels(ctx, rows, prompts, content_free, progress)
        else:
            preds = generate_answers(ctx, rows, prompts, progress)
        for pred, row_hits in zip(preds, hits):
            pred.extra["retrieved"] = [
                {
                    "id": h.chunk.id,
                    "doc": h.chunk.doc_id,
                    "score": round(h.score, 4),
                    "text": h.chunk.text,  # what the prompt showed: the judge's RAG checks read it
                }
                for h in row_hits[: self.k]
            ]
        return preds

    def extra_results(
        self, ctx: RunContext, rows: list[Row], predictions: list[Prediction]
    ) -> dict:
        out: dict = {"rag": {"k": self.k, "retrieval_mode": self.mode, **self.build}}
        golds = [list(r.context_ids) for r in rows]
        metrics = retrieval_metrics([self._rankings.get(r.id, []) for r in rows], golds, self.k)
        if metrics:
            out["retrieval"] = metrics
        by_doc: dict[str, list[str]] = {}
        for chunk in self.index.chunks:
            by_doc.setdefault(chunk.doc_id, []).append(chunk.text)
        gold_passages = [[t for d in g for t in by_doc.get(d, [])] for g in golds]
        figures = grounding(
            [p.output for p in predictions],
            [self._passages.get(r.id, []) for r in rows],
            gold_passages,
        )
        if figures:
            out["grounding"] = figures
        return out


def resolve(name: str, options: dict) -> Method | None:
    match = _NAME.fullmatch(name)
    if not match:
        return None
    mode, k = match.group(1), match.group(2)
    if k is not None and int(k) < 1:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError(f"method {name!r}: k must be at least 1")
    return RagMethod(name, int(k) if k else options.get("rag_k"), mode)
