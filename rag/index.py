"""FAISS indexes over normalised vectors: exact inner product for small corpora, IVF above.

The switch point and the IVF settings come from `bench/bench_rag_index.py` (docs/benchmarks.md,
the RAG index benchmark). The IVF probe count is tuned at build time to reach `TARGET_RECALL`
against exact search on sample queries, and the recall reached is stored with the index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Measured (bench_rag_index.py, 1,000 queries, 2 cores): IVF is only 1.3-1.5x faster than exact
# search up to 20,000 chunks (0.3 ms a query), 5.4x at 50,000 and 6.6-8.4x at 100,000, always at
# recall@5 >= 0.98. Exact search stays below 1 ms a query up to here, next to ~1 s of generation.
EXACT_MAX_VECTORS = 50_000
TARGET_RECALL = 0.97  # on the build-time sample, so real queries stay above 0.95
PROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class IndexInfo:
    kind: str  # "exact" or "ivf"
    n_vectors: int
    dim: int
    nlist: int = 0
    nprobe: int = 0
    recall_vs_exact: float = 1.0  # recall@k of the approximate index against exact search
    recall_k: int = 5


def build_index(
    vectors: np.ndarray,
    kind: str = "auto",
    seed: int = 0,
    k: int = 5,
    queries: np.ndarray | None = None,
):
    """Build an index over `vectors` (unit rows). Returns (faiss index, IndexInfo).

    `queries`: sample queries to tune the IVF probe count on (e.g. the task's train questions);
    without them, stored vectors moved off themselves by noise stand in for questions.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if kind == "auto":
        kind = "exact" if n <= EXACT_MAX_VECTORS else "ivf"
    if kind == "exact" or n < 1000:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, IndexInfo("exact", n, dim)
    if kind != "ivf":
        raise ValueError(f"unknown index kind {kind!r}")
    # ~4 sqrt(n) lists is the usual FAISS guidance; at least 39 training points per list.
    nlist = max(16, min(int(4 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
    index.cp.seed = seed
    index.train(sample)
    index.add(vectors)
    nprobe, recall = tune_nprobe(index, vectors, rng, k, queries)
    index.nprobe = nprobe
    return index, IndexInfo("ivf", n, dim, nlist, nprobe, recall, k)


def tune_nprobe(
    index, vectors: np.ndarray, rng, k: int, queries: np.ndarray | None = None, n: int = 300
) -> tuple[int, float]:
    """The smallest probe count whose recall@k against exact search reaches TARGET_RECALL."""
    import faiss

    if queries is None or len(queries) == 0:
        # A real question sits about as far from its best chunk as a vector with noise of its
        # own length (cosine ~0.7); nearer stand-ins would make too few probes look enough.
        picks = vectors[rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)]
        noise = rng.standard_normal(picks.shape).astype(np.float32)
        queries = picks + noise / np.sqrt(picks.shape[1])
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    recall = 0.0
    for nprobe in PROBES:
        if nprobe > index.nlist:
            break
        index.nprobe = nprobe
        _, found = index.search(queries, k)
        recall = recall_at_k(found, truth)
        if recall >= TARGET_RECALL:
            return nprobe, recall
    return min(PROBES[-1], index.nlist), recall


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the exact top-k ids that the approximate search also returned."""
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist()))
    return hits / max(truth.size, 1)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k scores and ids per query (ids -1 where fewer than k vectors exist)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    return index.search(queries, min(k, max(index.ntotal, 1)))


def serialize(index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes):
    """The index from `serialize`'s bytes; raises ValueError on a damaged file."""
    import faiss

    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError:
        raise ValueError("FAISS cannot read it") from None
