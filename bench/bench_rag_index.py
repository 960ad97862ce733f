"""The RAG index at 100,000 chunks: build time (embedding vs indexing), 1,000 top-5 queries
with our search vs LangChain's FAISS vector store on the same vectors, and the approximate (IVF)
index vs exact search; then the exact/IVF sweep over corpus sizes behind EXACT_MAX_VECTORS.

The corpus is generated. Embedding 100,000 chunks with all-MiniLM-L6-v2 on 2 shared CPU cores
takes too long for a benchmark, so the script embeds EMBEDDED chunks for real, extrapolates the
embedding time from that rate, and synthesises the other vectors as noisy mixtures of the real
ones (so they keep the real vectors' cluster structure, which is what IVF depends on). The
1,000 queries are generated questions, embedded for real.

Needs the `bench` extra (langchain-community): pip install -e '.[bench]'
"""

from __future__ import annotations

import time

import numpy as np
from _common import timed

from experiments.embeddings import Embedder
from rag.index import EXACT_MAX_VECTORS, build_index, recall_at_k

N_CHUNKS = 100_000
EMBEDDED = 1_000
N_QUERIES = 1_000
K = 5
SWEEP = (5_000, 10_000, 20_000, 50_000, 100_000)

PRODUCTS = ["Halo A19", "Halo GU10", "Lantern", "Beacon hub", "Dial remote", "Strip 2m", "Orb"]
TOPICS = ["warranty", "firmware", "pairing", "refund", "delivery", "reset", "billing", "Wi-Fi"]
VERBS = ["supports", "needs", "includes", "costs", "lasts", "requires", "reports", "blocks"]


def corpus(rng: np.random.Generator, n: int) -> list[str]:
    """Help-centre-like chunks of three to five generated sentences."""
    texts = []
    for i in range(n):
        sentences = []
        for _ in range(rng.integers(3, 6)):
            p, t, v = rng.choice(PRODUCTS), rng.choice(TOPICS), rng.choice(VERBS)
            number = rng.integers(1, 500)
            sentences.append(f"The {p} {v} {number} units for {t} under plan {i % 97}.")
        texts.append(" ".join(sentences))
    return texts


def questions(rng: np.random.Generator, n: int) -> list[str]:
    return [
        f"How does the {rng.choice(PRODUCTS)} handle {rng.choice(TOPICS)} on plan "
        f"{rng.integers(0, 97)}?"
        for _ in range(n)
    ]


def synthesise(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    a = real[rng.integers(0, len(real), n)]
    b = real[rng.integers(0, len(real), n)]
    mix = rng.uniform(0.0, 0.35, (n, 1)).astype(np.float32)
    noise = rng.standard_normal(a.shape).astype(np.float32) * (0.25 / np.sqrt(a.shape[1]))
    v = (1 - mix) * a + mix * b + noise
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def langchain_store(vectors: np.ndarray, ids: list[str]):
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    from langchain_core.documents import Document
    from langchain_core.embeddings import FakeEmbeddings

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    docstore = InMemoryDocstore({i: Document(page_content=i, id=i) for i in ids})
    return FAISS(
        FakeEmbeddings(size=vectors.shape[1]),
        index,
        docstore,
        dict(enumerate(ids)),
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )


def main() -> None:
    import argparse

    global N_CHUNKS, EMBEDDED, SWEEP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=N_CHUNKS)
    parser.add_argument("--embedded", type=int, default=EMBEDDED)
    args = parser.parse_args()
    N_CHUNKS, EMBEDDED = args.chunks, min(args.embedded, args.chunks)
    SWEEP = tuple(n for n in SWEEP if n <= N_CHUNKS)
    rng = np.random.default_rng(0)
    texts = corpus(rng, EMBEDDED)
    embedder = Embedder()
    embedder.encode(["warm-up"])
    embed_s, real = timed(lambda: embedder.encode(texts))
    rate = EMBEDDED / embed_s
    queries = embedder.encode(questions(rng, N_QUERIES))
    tuning = embedder.encode(questions(rng, 200))  # held out from the measured queries
    vectors = np.concatenate([real, synthesise(real, N_CHUNKS - EMBEDDED, rng)])
    ids = [f"doc{i // 4}#{i % 4}" for i in range(N_CHUNKS)]

    exact_build_s, (exact, _) = timed(lambda: build_index(vectors, "exact"))
    ivf_build_s, (ivf, info) = timed(lambda: build_index(vectors, "ivf", queries=tuning))
    print(f"corpus: {N_CHUNKS:,} chunks, {vectors.shape[1]} dimensions")
    print(
        f"embedding: {EMBEDDED:,} chunks embedded in {embed_s:.1f} s ({rate:.0f} chunks/s); "
        f"100,000 would take ~{N_CHUNKS / rate / 60:.1f} min (extrapolated)"
    )
    print(f"indexing: exact {exact_build_s:.2f} s; IVF {ivf_build_s:.2f} s ({info.nlist} lists,")
    print(f"          nprobe {info.nprobe} tuned to recall@5 {info.recall_vs_exact:.3f})")

    # Our search as the method runs it: one batch, ids mapped back to chunk ids.
    def ours(index):
        scores, found = index.search(queries, K)
        return [[(ids[i], s) for i, s in zip(r, q) if i >= 0] for r, q in zip(found, scores)]

    def ours_one_by_one():
        return [ours_single(q) for q in queries]

    def ours_single(q):
        scores, found = exact.search(q[None, :], K)
        return [(ids[i], s) for i, s in zip(found[0], scores[0])]

    store = langchain_store(vectors, ids)

    def lc():
        return [store.similarity_search_with_score_by_vector(q.tolist(), k=K) for q in queries]

    ours_s, ours_hits = timed(lambda: ours(exact), repeat=3)
    single_s, _ = timed(ours_one_by_one, repeat=1)
    lc_s, lc_hits = timed(lc, repeat=1)
    same = sum([h[0] for h in a] == [d.id for d, _ in b] for a, b in zip(ours_hits, lc_hits))
    print(f"\n{N_QUERIES:,} queries, top-{K}, exact search on the same vectors:")
    print(f"  ours (one batch)             {ours_s:8.3f} s")
    print(f"  ours (one query at a time)   {single_s:8.3f} s")
    print(f"  LangChain FAISS vector store {lc_s:8.3f} s")
    print(
        f"  ratio: {lc_s / ours_s:.1f}x (batch), {lc_s / single_s:.1f}x (one at a time); "
        f"same top-{K} ids for {same}/{N_QUERIES} queries (target >= 1x)"
    )

    ivf_s, _ = timed(lambda: ivf.search(queries, K), repeat=3)
    flat_s, (_, truth) = timed(lambda: exact.search(queries, K), repeat=3)
    _, found = ivf.search(queries, K)
    recall = recall_at_k(found, truth)
    print(
        f"\nIVF vs exact, {N_QUERIES:,} queries: {flat_s:.3f} s vs {ivf_s:.3f} s = "
        f"{flat_s / ivf_s:.1f}x faster, recall@{K} {recall:.3f} (targets >= 5x, >= 0.95)"
    )

    print(
        f"\nexact vs IVF by corpus size ({N_QUERIES:,} queries; EXACT_MAX_VECTORS = "
        f"{EXACT_MAX_VECTORS:,}):"
    )
    print(f"{'chunks':>8}{'exact s':>10}{'IVF s':>9}{'speed-up':>10}{'recall@5':>10}{'build s':>9}")
    for n in SWEEP:
        if n == N_CHUNKS:  # built above; no need to pay for it twice
            flat, approx, build_s = exact, ivf, ivf_build_s
        else:
            sub = vectors[:n]
            flat, _ = build_index(sub, "exact")
            start = time.perf_counter()
            approx, _ = build_index(sub, "ivf", queries=tuning)
            build_s = time.perf_counter() - start
        f_s, (_, t) = timed(lambda flat=flat: flat.search(queries, K), repeat=3)
        a_s, (_, f) = timed(lambda approx=approx: approx.search(queries, K), repeat=3)
        print(
            f"{n:>8,}{f_s:>10.3f}{a_s:>9.3f}{f_s / a_s:>9.1f}x{recall_at_k(f, t):>10.3f}"
            f"{build_s:>9.2f}"
        )


if __name__ == "__main__":
    main()
