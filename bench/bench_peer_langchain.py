"""Example selection and retrieval against LangChain, the same embedding model on both sides.

1. Few-shot example selection: the demo intents task's train rows as the pool, its eval rows
   as queries, k=4. adaptwise's `EmbeddingSelector` (pool embedded in one call, every query in
   one call and one matrix product) vs LangChain's `SemanticSimilarityExampleSelector` over its
   FAISS vector store (`from_examples`, then `select_examples` per query: its interface takes
   one query). Checks both pick the same examples in the same order.
2. The FAISS pipeline: the demo help-desk corpus, chunked as adaptwise's index chunks it; build
   (embed + index) and top-3 retrieval for the task's train and eval questions. adaptwise's
   `rag.store.open_index` (cold: a fresh folder, so its embedding cache holds nothing; it also
   chunks, hashes and saves) and `RagIndex.search` vs LangChain's `FAISS.from_texts` and
   `similarity_search` per question (langchain-community). Checks the same top-3 (recall).

Both sides call the same loaded all-MiniLM-L6-v2 (`experiments.embeddings.Embedder`; LangChain
through a two-method `Embeddings` adapter), so the difference is what each does around the
model. Each round runs both sides, alternating which goes first; prints per-round and median
ratios of CPU seconds and wall time (LangChain / adaptwise: above 1 means adaptwise is cheaper).
Needs the `bench` extra (langchain-community): pip install -e '.[bench]'
Run: python bench/bench_peer_langchain.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from _common import ROOT, alternating_rounds, cpu_and_wall, pin_threads, print_ratios
from langchain_core.embeddings import Embeddings

from experiments.embeddings import Embedder
from experiments.selectors import EmbeddingSelector
from experiments.task import load_task

# langchain-community announces its sunset on import; the FAISS store is still LangChain's.
warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)

K_SHOTS, K_PASSAGES = 4, 3


class SameEmbedder(Embeddings):
    """LangChain's embedding interface over adaptwise's loaded embedder."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.encode(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.encode([text])[0].tolist()


def selection(embedder: Embedder, rounds: int) -> None:
    from langchain_community.vectorstores import FAISS
    from langchain_core.example_selectors import SemanticSimilarityExampleSelector

    task = load_task(ROOT / "demo" / "support-intents" / "task.yaml")
    pool = [{"input": r.text, "output": r.output, "row": str(i)} for i, r in enumerate(task.train)]
    queries = [r.text for r in task.eval]

    def ours():
        selector = EmbeddingSelector(pool, k=K_SHOTS, embedder=embedder)
        selector.prepare()
        return selector.select_many(queries)

    def langchain():
        selector = SemanticSimilarityExampleSelector.from_examples(
            pool, SameEmbedder(embedder), FAISS, k=K_SHOTS, input_keys=["input"]
        )
        return [[int(e["row"]) for e in selector.select_examples({"input": q})] for q in queries]

    def report(round_, got):
        (c_o, w_o, p_o), (c_l, w_l, p_l) = got["adaptwise"], got["LangChain"]
        same = sum(a == b for a, b in zip(p_o, p_l))
        print(
            f"selection round {round_ + 1}: adaptwise {c_o:.2f} CPU s / {w_o:.2f} s wall, "
            f"LangChain {c_l:.2f} / {w_l:.2f}; same picks in the same order "
            f"{same}/{len(queries)}"
        )

    print(f"1. selection: pool {len(pool)} train rows, {len(queries)} queries, k={K_SHOTS}")
    runs = alternating_rounds(
        {"adaptwise": lambda: cpu_and_wall(ours), "LangChain": lambda: cpu_and_wall(langchain)},
        rounds,
        report,
    )
    print_ratios("selection", runs, "LangChain", "adaptwise")


def retrieval(embedder: Embedder, rounds: int) -> None:
    from langchain_community.vectorstores import FAISS

    from rag.store import open_index

    task = load_task(ROOT / "demo" / "helpdesk-qa" / "task.yaml")
    questions = [r.text for r in task.train + task.eval]
    quiet = lambda *_a, **_k: None  # noqa: E731

    def ours():
        with tempfile.TemporaryDirectory() as folder:
            build_cpu, build_wall, (index, _) = cpu_and_wall(
                lambda: open_index(task, embedder, Path(folder), progress=quiet)
            )
            query_cpu, query_wall, hits = cpu_and_wall(lambda: index.search(questions, K_PASSAGES))
        found = [[h.chunk.text for h in row] for row in hits]
        return build_cpu, build_wall, query_cpu, query_wall, found, [c.text for c in index.chunks]

    chunks = ours()[5]  # LangChain gets the chunks adaptwise made

    def langchain():
        build_cpu, build_wall, store = cpu_and_wall(
            lambda: FAISS.from_texts(chunks, SameEmbedder(embedder))
        )
        query_cpu, query_wall, docs = cpu_and_wall(
            lambda: [store.similarity_search(q, k=K_PASSAGES) for q in questions]
        )
        found = [[d.page_content for d in row] for row in docs]
        return build_cpu, build_wall, query_cpu, query_wall, found, chunks

    def side(fn):
        def run():
            b_cpu, b_wall, q_cpu, q_wall, found, _ = fn()
            return b_cpu + q_cpu, b_wall + q_wall, (b_cpu, b_wall, q_cpu, q_wall, found)

        return run

    def report(round_, got):
        o, lc = got["adaptwise"][2], got["LangChain"][2]
        recall = sum(len(set(a) & set(b)) for a, b in zip(o[4], lc[4])) / (
            K_PASSAGES * len(questions)
        )
        print(
            f"retrieval round {round_ + 1}: build adaptwise {o[0]:.2f} CPU s / {o[1]:.2f} s, "
            f"LangChain {lc[0]:.2f} / {lc[1]:.2f}; queries adaptwise {o[2]:.2f} CPU s / "
            f"{o[3]:.2f} s, LangChain {lc[2]:.2f} / {lc[3]:.2f}; LangChain's top-3 found by "
            f"adaptwise: {100 * recall:.1f}%"
        )

    print(f"2. retrieval: {len(chunks)} chunks, {len(questions)} questions, top-{K_PASSAGES}")
    runs = alternating_rounds(
        {"adaptwise": side(ours), "LangChain": side(langchain)}, rounds, report
    )
    print_ratios("retrieval, build + queries", runs, "LangChain", "adaptwise")
    queries_only = {name: [(r[2][2], r[2][3]) for r in done] for name, done in runs.items()}
    print_ratios("retrieval, queries alone", queries_only, "LangChain", "adaptwise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pin_threads()
    embedder = Embedder()
    embedder.encode(["warm-up"])  # load the model before timing
    selection(embedder, args.rounds)
    retrieval(embedder, args.rounds)


if __name__ == "__main__":
    main()
