"""Retrieval metrics against gold document ids, and an answer-grounding figure.

BEIR-style definitions at document level: a query's ranking is the documents of its retrieved
chunks in order of first appearance. recall@k = |gold ∩ documents of the top-k chunks| / |gold|;
MRR@10 = 1 / rank of the first gold document among the top-10 chunks' documents (0 if none).
Both are averaged over the rows that carry `context_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.metrics import normalize_answer

RECALL_KS = (1, 3, 5, 10)
MRR_DEPTH = 10


def doc_ranking(doc_ids: Sequence[str]) -> list[str]:
    """Document ids in order of first appearance."""
    return list(dict.fromkeys(doc_ids))


def recall_at(retrieved_docs: Sequence[str], gold: Sequence[str], k: int) -> float:
    """`retrieved_docs` is the per-chunk document list, best first; k counts chunks."""
    return len(set(retrieved_docs[:k]) & set(gold)) / len(set(gold))


def reciprocal_rank(retrieved_docs: Sequence[str], gold: Sequence[str], depth: int) -> float:
    for rank, doc in enumerate(doc_ranking(retrieved_docs[:depth]), 1):
        if doc in gold:
            return 1.0 / rank
    return 0.0


def retrieval_metrics(
    rankings: list[Sequence[str]], golds: list[Sequence[str]], k: int
) -> dict[str, float | int]:
    """Mean recall@{1,3,5,10,k} and MRR@10 over the queries that have gold documents."""
    pairs = [(r, g) for r, g in zip(rankings, golds) if g]
    if not pairs:
        return {}
    out: dict[str, float | int] = {"n_queries": len(pairs)}
    for cut in sorted(set(RECALL_KS) | {k}):
        out[f"recall@{cut}"] = round(sum(recall_at(r, g, cut) for r, g in pairs) / len(pairs), 4)
    mrr = sum(reciprocal_rank(r, g, MRR_DEPTH) for r, g in pairs) / len(pairs)
    out[f"mrr@{MRR_DEPTH}"] = round(mrr, 4)
    return out


def token_share(answer: str, passages: Sequence[str]) -> float | None:
    """Share of the answer's normalised tokens that occur in the passages (None: no tokens)."""
    tokens = normalize_answer(answer).split()
    if not tokens:
        return None
    vocabulary = set(normalize_answer(" ".join(passages)).split())
    return sum(t in vocabulary for t in tokens) / len(tokens)


def grounding(
    answers: list[str], retrieved: list[Sequence[str]], gold_passages: list[Sequence[str]]
) -> dict[str, float | int]:
    """Mean share of answer tokens found in the retrieved passages, and in the gold passages
    (rows with gold documents only for the latter). A judge-free grounding proxy."""
    out: dict[str, float | int] = {}
    shares = [token_share(a, p) for a, p in zip(answers, retrieved)]
    shares = [s for s in shares if s is not None]
    if shares:
        out["answer_tokens_in_retrieved"] = round(sum(shares) / len(shares), 4)
    gold = [token_share(a, p) for a, p in zip(answers, gold_passages) if p]
    gold = [s for s in gold if s is not None]
    if gold:
        out["answer_tokens_in_gold"] = round(sum(gold) / len(gold), 4)
    return out
