"""Benchmark: JaccardSelector (sparse matrix) against per-pair Python loops.

Builds a deterministic pool of 10,000 sentences and 200 queries from a Zipf-distributed
vocabulary of 3,000 made-up words, checks that all give identical picks, and prints
milliseconds per query and speedups. Two baselines: `jaccard_reference`, which tokenises every
pool text for every query, and the same loop over word sets built once, which is the fairer
one; the 10x target is checked against the fairer one. Run with `python bench/bench_jaccard.py`
(about 30 s).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.selectors import JaccardSelector, jaccard_reference, word_set

POOL_SIZE = 10_000
QUERY_COUNT = 200
REFERENCE_QUERY_COUNT = 50  # jaccard_reference is slow; timed and checked on the first 50
VOCABULARY_SIZE = 3_000
K = 8
SEED = 0
TARGET_SPEEDUP = 10.0
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ph", "qu", "an", "el", "or"]


def make_vocabulary(rng: np.random.Generator) -> list[str]:
    """Distinct made-up words of two to four syllables."""
    words: set[str] = set()
    while len(words) < VOCABULARY_SIZE:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))))
    return sorted(words)


def make_sentences(rng: np.random.Generator, vocabulary: list[str], count: int) -> list[str]:
    """Sentences of 5-40 words; word frequencies follow Zipf's law, as in natural text."""
    weights = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(5, 41, size=count)
    words = np.asarray(vocabulary)
    return [" ".join(words[rng.choice(len(words), size=n, p=weights)]) for n in lengths]


def loop_over_prebuilt_sets(query: str, pool_sets: list[set[str]], k: int) -> list[int]:
    """`jaccard_reference` with the pool's word sets built beforehand."""
    query_words = word_set(query)
    similarities = []
    for words in pool_sets:
        union = len(query_words | words)
        similarities.append(len(query_words & words) / union if union else 0.0)
    return sorted(range(len(pool_sets)), key=lambda i: (-similarities[i], i))[:k]


def time_per_query(run, n_queries: int) -> tuple[float, object]:
    """Milliseconds per query of `run()` and its result."""
    start = time.perf_counter()
    result = run()
    return (time.perf_counter() - start) * 1000 / n_queries, result


def main() -> int:
    rng = np.random.default_rng(SEED)
    vocabulary = make_vocabulary(rng)
    pool_inputs = make_sentences(rng, vocabulary, POOL_SIZE)
    queries = make_sentences(rng, vocabulary, QUERY_COUNT)
    pool = [{"input": text, "output": ""} for text in pool_inputs]

    start = time.perf_counter()
    selector = JaccardSelector(pool, k=K)
    index_ms = (time.perf_counter() - start) * 1000

    batched_ms, batched = time_per_query(lambda: selector.select_many(queries), QUERY_COUNT)
    single_ms, single = time_per_query(lambda: [selector.select(q) for q in queries], QUERY_COUNT)
    reference_queries = queries[:REFERENCE_QUERY_COUNT]
    reference_ms, reference = time_per_query(
        lambda: [jaccard_reference(q, pool_inputs, K) for q in reference_queries],
        REFERENCE_QUERY_COUNT,
    )
    pool_sets = [word_set(text) for text in pool_inputs]
    prebuilt_ms, prebuilt = time_per_query(
        lambda: [loop_over_prebuilt_sets(q, pool_sets, K) for q in queries], QUERY_COUNT
    )
    assert batched[:REFERENCE_QUERY_COUNT] == reference, "picks differ from jaccard_reference"
    assert batched == single == prebuilt, "picks differ from the loop over pre-built sets"

    print(f"pool {POOL_SIZE:,} examples, {QUERY_COUNT} queries, k={K}")
    print(f"index build: {index_ms:.0f} ms (once)")
    print(
        f"picks identical: ours = jaccard_reference on {REFERENCE_QUERY_COUNT} queries, "
        f"ours = pre-built loop on all {QUERY_COUNT}"
    )
    print(f"{'method':<32}{'ms/query':>10}{'vs reference':>14}{'vs prebuilt':>13}")
    rows = [
        ("jaccard_reference (loop)", reference_ms),
        ("loop over pre-built sets", prebuilt_ms),
        ("JaccardSelector.select", single_ms),
        ("JaccardSelector.select_many", batched_ms),
    ]
    for name, ms in rows:
        print(f"{name:<32}{ms:>10.3f}{reference_ms / ms:>13.1f}x{prebuilt_ms / ms:>12.1f}x")
    worst_speedup = prebuilt_ms / max(single_ms, batched_ms)
    verdict = "meets" if worst_speedup >= TARGET_SPEEDUP else "BELOW"
    print(f"slowest of ours vs pre-built loop: {worst_speedup:.1f}x, {verdict} the 10x target")
    return 0 if worst_speedup >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
