"""Retrieval on a fine-tuned model: `rag+lora` (also `rag+qlora`, `rag+full-ft`) and `raft`.

- `rag+<method>` trains the adapter (or every weight) on the plain zero-shot prompts, exactly as
  `<method>` does, then answers with the RAG prompt (retrieved passages, worked examples).
- `raft` follows RAFT (Zhang et al. 2024, "Adapting Language Model to Domain Specific RAG"):
  a LoRA adapter is trained on prompts that already hold retrieved passages. For a share of the
  train rows (`finetune raft_oracle_fraction`, 0.8 as in the paper) the passages are the one that
  holds the answer plus k-1 distractors, shuffled; for the rest they are k distractors only, so
  the model also learns to answer when retrieval missed. It answers with the same prompt
  (passages, no worked examples).

Artefacts go to `<run out>/<name>/` like those of the plain fine-tuning methods.
"""

from __future__ import annotations

import random
import re

from experiments.context import RunContext
from experiments.methods import Method, Prediction, Progress
from experiments.metrics import normalize_answer
from experiments.task import Row
from finetune.families import finetune_method
from rag.methods import RagMethod, format_passages

_NAME = re.compile(r"rag\+(lora|qlora|full-ft)|raft")
RETRIEVE_DEPTH = 10  # candidates searched per train row for the oracle and the distractors


class RagFinetuneMethod(Method):
    """A fine-tuned model (trained as `ft_method`, or RAFT-style) answering with RAG prompts."""

    retrieves = True

    def __init__(self, name: str, ft_method: str, raft: bool, options: dict):
        self.name = name
        self.trains = ft_method
        self.raft = raft
        self.options = options
        self.rag = RagMethod(name, options.get("rag_k"), None)
        self.finetune = finetune_method(ft_method, options, folder_name=_folder(name), label=name)
        if raft:
            self.finetune.training_rows = self._raft_rows
        self.needs_base = self.finetune.needs_base
        self._questions = None
        self.seed = 0
        self._oracle_count = 0  # train + validation rows shown the passage with the answer
        self.stats: dict = {"hybrid": {"retrieval": "rag", "finetune": ft_method, "raft": raft}}
        self.description = (
            "LoRA trained on prompts with retrieved passages (RAFT: oracle + distractors)"
            if raft
            else f"{ft_method} model answering with retrieved passages"
        )

    def check(self, ctx: RunContext) -> None:
        self.rag.check(ctx)
        self.finetune.check(ctx)

    def seed_list(self, ctx: RunContext) -> list[int]:
        return self.finetune.seed_list(ctx)

    def reseeded(self, seed: int) -> RagFinetuneMethod:
        """The same retrieval over a model trained with `seed` (its own folder)."""
        other = RagFinetuneMethod(self.name, self.finetune.name, self.raft, self.options)
        finetune = self.finetune.reseeded(seed)
        if self.raft:
            finetune.training_rows = other._raft_rows
        other.finetune = finetune
        return other

    def prepare_retrieval(self, ctx: RunContext) -> None:
        """The retrieval half of prepare (also before loading a saved model: predict)."""
        self.seed = ctx.seed
        self._questions = ctx.questions  # RAFT's retrieval reuses the run's question vectors
        self.rag.prepare(ctx)
        if self.raft:  # trained on passage prompts: worked examples would only add length
            self.rag.shots, self.rag.selector = 0, None

    def prepare(self, ctx: RunContext) -> None:
        self.prepare_retrieval(ctx)
        self.finetune.prepare(ctx)
        if self.raft:
            fraction = self.finetune.config.raft_oracle_fraction
            self.stats["hybrid"]["oracle_fraction"] = fraction
            self.stats["hybrid"]["rows_with_oracle"] = self._oracle_count

    def _raft_rows(self, rows: list[Row]) -> list[Row]:
        """Each row's question behind passages: oracle + distractors, or distractors only."""
        config = self.finetune.config
        k = self.rag.k
        rng = random.Random(f"raft-{config.seed}-{len(rows)}")
        hits = self.rag.index.search(
            [r.text for r in rows], max(RETRIEVE_DEPTH, k + 1), self.rag.mode, self._questions
        )
        out = []
        oracle_count = 0
        for row, row_hits in zip(rows, hits):
            oracle = _oracle(row, row_hits)
            distractors = [h.chunk.text for h in row_hits if h is not oracle]
            distractors = [t for t in distractors if not _holds(row, t)]
            if oracle is not None and rng.random() < config.raft_oracle_fraction:
                passages = [oracle.chunk.text, *distractors[: k - 1]]
                oracle_count += 1
            else:
                passages = distractors[:k]
            rng.shuffle(passages)
            content = f"{format_passages(passages)}\n\n{row.text}"
            out.append(Row(row.id, ({"role": "user", "content": content},), row.output))
        self._oracle_count += oracle_count
        return out

    def predict(self, ctx: RunContext, rows: list[Row], progress: Progress) -> list[Prediction]:
        return self.rag.predict(self.finetune.trained, rows, progress)

    def extra_results(
        self, ctx: RunContext, rows: list[Row], predictions: list[Prediction]
    ) -> dict:
        out = self.rag.extra_results(ctx, rows, predictions)
        out.update(self.finetune.extra_results(ctx, rows, predictions))
        out.update(self.stats)
        return out


def _oracle(row: Row, hits: list):
    """The retrieved chunk that holds the row's answer: from a gold document when the row names
    its documents (context_ids), else any chunk containing the answer; None when none does."""
    gold_docs = set(row.context_ids)
    holding = [h for h in hits if _holds(row, h.chunk.text)]
    in_gold = [h for h in holding if h.chunk.doc_id in gold_docs]
    if in_gold:
        return in_gold[0]
    if gold_docs:
        gold_hits = [h for h in hits if h.chunk.doc_id in gold_docs]
        if gold_hits:
            return gold_hits[0]
    return holding[0] if holding else None


def _holds(row: Row, text: str) -> bool:
    answer = normalize_answer(row.output)
    return bool(answer) and answer in normalize_answer(text)


def _folder(name: str) -> str:
    return name.replace("+", "_plus_")


def resolve(name: str, options: dict) -> Method | None:
    match = _NAME.fullmatch(name)
    if not match:
        return None
    ft_method = match.group(1) or "lora"
    return RagFinetuneMethod(name, ft_method, raft=name == "raft", options=options)
