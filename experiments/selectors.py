"""Few-shot example selection: for each query, choose k examples from a pool of train rows.

Pool items are dicts with at least "input" and "output" strings; selectors compare the query
with each item's "input" and return pool indices, most relevant first. `LangChainSelector`
exposes any of them as a LangChain example selector.
"""

from __future__ import annotations

import abc
import hashlib
import re
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from langchain_core.example_selectors import BaseExampleSelector
from pydantic import BaseModel, ConfigDict

from experiments.context import RunOptions
from experiments.embeddings import Embedder
from experiments.errors import AdaptwiseError, TaskError

_WORD = re.compile(r"\w+")

# Queries scored per sparse matmul in JaccardSelector.select_many; bounds the dense score block
# to about this many queries times the pool size.
_QUERY_CHUNK = 256


def word_set(text: str) -> set[str]:
    """The lower-cased `\\w+` words of `text`, as a set."""
    return set(_WORD.findall(text.lower()))


def jaccard_reference(query: str, pool_inputs: list[str], k: int) -> list[int]:
    """Top-k pool indices by Jaccard similarity, one Python set comparison per pair.

    The slow, obviously correct version that tests and the benchmark check
    `JaccardSelector` against. Ties go to the lower index; two empty sets score 0.
    """
    query_words = word_set(query)
    similarities = []
    for text in pool_inputs:
        words = word_set(text)
        union = len(query_words | words)
        similarities.append(len(query_words & words) / union if union else 0.0)
    ranked = sorted(range(len(pool_inputs)), key=lambda i: (-similarities[i], i))
    return ranked[: max(k, 0)]


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores in each row, best first, ties to the lower index.

    `np.argpartition` finds the k best per row without a full sort, but picks arbitrarily among
    scores tied at the k-th place; those rows are redone so that the lower index wins, as it
    does in `jaccard_reference`.
    """
    scores = np.atleast_2d(scores)
    n_rows, n_items = scores.shape
    k = min(max(k, 0), n_items)
    if k == 0:
        return np.zeros((n_rows, 0), dtype=np.intp)
    if k < n_items:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n_items), (n_rows, n_items)).copy()
    kth_best = np.take_along_axis(scores, candidates, axis=1).min(axis=1)
    at_least_kth = (scores >= kth_best[:, None]).sum(axis=1)
    for row in np.flatnonzero(at_least_kth > k):
        above = np.flatnonzero(scores[row] > kth_best[row])
        tied = np.flatnonzero(scores[row] == kth_best[row])[: k - len(above)]
        candidates[row] = np.concatenate([above, tied])
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -candidate_scores), axis=1)
    return np.take_along_axis(candidates, order, axis=1)


def _check_example(example: Any) -> dict:
    if not isinstance(example, dict) or not all(
        isinstance(example.get(key), str) for key in ("input", "output")
    ):
        raise TaskError(f'a few-shot example needs "input" and "output" strings: {example!r:.80}')
    return example


class ExampleSelector(abc.ABC):
    """Chooses, per query, k examples from a pool; subclasses say how relevance is judged."""

    name: ClassVar[str]

    def __init__(self, pool: list[dict], k: int = RunOptions.k, seed: int = 0) -> None:
        """Keep a copy of the pool list (the example dicts themselves are shared)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.pool: list[dict] = [_check_example(example) for example in pool]
        self.k = k
        self.seed = seed

    @abc.abstractmethod
    def select(self, query: str) -> list[int]:
        """Pool indices of the examples to show for `query`, most relevant first."""

    def select_many(self, queries: list[str]) -> list[list[int]]:
        """`select` for each query; subclasses batch this where it pays."""
        return [self.select(query) for query in queries]

    def add(self, example: dict) -> None:
        """Append `example` to the pool; subclasses also update their index."""
        self.pool.append(_check_example(example))

    def prepare(self) -> None:
        """Do the one-off work now (a method's `prepare` calls this, so that it is timed as
        preparation, not as the first query's inference)."""

    @property
    def pool_inputs(self) -> list[str]:
        """The "input" text of every pool item, in pool order."""
        return [example["input"] for example in self.pool]


class RandomSelector(ExampleSelector):
    """k examples drawn at random, reproducibly for a given (seed, query) pair."""

    name = "random"

    def select(self, query: str) -> list[int]:
        """k distinct pool indices drawn with an RNG seeded from (seed, query text)."""
        # A stable digest rather than hash(): str hashes are salted per process.
        digest = hashlib.sha256(f"{self.seed}\0{query}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        size = min(self.k, len(self.pool))
        return rng.choice(len(self.pool), size=size, replace=False).tolist()


class JaccardSelector(ExampleSelector):
    """Examples whose word sets overlap most with the query's (Jaccard similarity, IoU).

    The pool is held as a binary word-by-example CSR matrix, so one sparse product with the
    queries' binary word vectors gives the intersection sizes for a whole batch of queries.
    """

    name = "jaccard"

    def __init__(self, pool: list[dict], k: int = RunOptions.k, seed: int = 0) -> None:
        """Index the pool's word sets (the vocabulary is the pool's words)."""
        super().__init__(pool, k, seed)
        self._vocabulary: dict[str, int] = {}
        self._examples_by_word: sp.csr_matrix | None = None
        self._set_sizes = np.zeros(0, dtype=np.int64)
        self._build_index()

    def add(self, example: dict) -> None:
        """Append `example`; the index is rebuilt on the next selection."""
        super().add(example)
        self._examples_by_word = None

    def _build_index(self) -> sp.csr_matrix:
        vocabulary: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        for text in self.pool_inputs:
            indices.extend(vocabulary.setdefault(word, len(vocabulary)) for word in word_set(text))
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.int32)
        shape = (len(self.pool), len(vocabulary))
        words_by_example = sp.csr_matrix((data, indices, indptr), shape=shape)
        self._vocabulary = vocabulary
        self._set_sizes = np.diff(words_by_example.indptr).astype(np.int64)
        # Stored transposed, in CSR, so that queries @ index needs no format conversion per call.
        self._examples_by_word = words_by_example.T.tocsr()
        return self._examples_by_word

    def _query_matrix(self, queries: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Binary query-word matrix over the pool vocabulary, and each query's full set size.

        Words outside the pool vocabulary cannot intersect but still count towards the union.
        """
        indptr = [0]
        indices: list[int] = []
        set_sizes = np.zeros(len(queries), dtype=np.int64)
        for row, query in enumerate(queries):
            words = word_set(query)
            set_sizes[row] = len(words)
            indices.extend(self._vocabulary[w] for w in words if w in self._vocabulary)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.int32)
        shape = (len(queries), len(self._vocabulary))
        return sp.csr_matrix((data, indices, indptr), shape=shape), set_sizes

    def similarities(self, queries: list[str]) -> np.ndarray:
        """(len(queries), len(pool)) Jaccard similarities; 0 where both word sets are empty."""
        index = self._examples_by_word
        if index is None:
            index = self._build_index()
        query_matrix, query_sizes = self._query_matrix(queries)
        intersections = (query_matrix @ index).toarray().astype(np.int64)
        unions = query_sizes[:, None] + self._set_sizes[None, :] - intersections
        out = np.zeros(intersections.shape, dtype=np.float64)
        np.divide(intersections, unions, out=out, where=unions > 0)
        return out

    def select(self, query: str) -> list[int]:
        """The k pool indices with the highest Jaccard similarity to `query`."""
        return self.select_many([query])[0]

    def select_many(self, queries: list[str]) -> list[list[int]]:
        """`select` for every query, scored a chunk of queries per sparse product."""
        picks: list[list[int]] = []
        for start in range(0, len(queries), _QUERY_CHUNK):
            scores = self.similarities(queries[start : start + _QUERY_CHUNK])
            picks.extend(top_k_rows(scores, self.k).tolist())
        return picks


class EmbeddingSelector(ExampleSelector):
    """Examples whose embeddings are closest to the query's (cosine similarity)."""

    name = "embedding"

    def __init__(
        self,
        pool: list[dict],
        k: int = RunOptions.k,
        seed: int = 0,
        embedder: Embedder | None = None,
    ) -> None:
        """Keep the pool; it is embedded on first use, once."""
        super().__init__(pool, k, seed)
        self.embedder = embedder if embedder is not None else Embedder()
        self._pool_vectors: np.ndarray | None = None

    def prepare(self) -> None:
        """Load the embedder and embed the pool."""
        self.pool_vectors  # noqa: B018

    @property
    def pool_vectors(self) -> np.ndarray:
        """Unit-length embeddings of the pool inputs, one row per pool item."""
        if self._pool_vectors is None:
            self._pool_vectors = self.embedder.encode(self.pool_inputs)
        return self._pool_vectors

    def add(self, example: dict) -> None:
        """Append `example`, embedding it now if the pool has been embedded already."""
        super().add(example)
        if self._pool_vectors is not None:
            vector = self.embedder.encode([example["input"]])
            self._pool_vectors = np.vstack([self._pool_vectors, vector])

    def similarities(self, queries: list[str]) -> np.ndarray:
        """(len(queries), len(pool)) cosine similarities."""
        pool_vectors = self.pool_vectors
        if not queries or not len(pool_vectors):
            return np.zeros((len(queries), len(pool_vectors)), dtype=np.float32)
        return self.embedder.encode(queries) @ pool_vectors.T

    def select(self, query: str) -> list[int]:
        """The k pool indices most similar to `query`."""
        return self.select_many([query])[0]

    def select_many(self, queries: list[str]) -> list[list[int]]:
        """`select` for every query: one encode call and one matrix product."""
        return top_k_rows(self.similarities(queries), self.k).tolist()


class MMRSelector(EmbeddingSelector):
    """Maximal marginal relevance: relevant to the query, but unlike the examples already picked.

    From the `fetch_k` most similar pool items, greedily picks the one maximising
    `lambda_mult * sim(query, d) - (1 - lambda_mult) * max(sim(d, s) for s already picked)`.
    """

    name = "mmr"

    def __init__(
        self,
        pool: list[dict],
        k: int = RunOptions.k,
        seed: int = 0,
        embedder: Embedder | None = None,
        lambda_mult: float = 0.5,
        fetch_k: int = 20,
    ) -> None:
        """`lambda_mult` 1 is plain similarity ranking, 0 is maximal diversity."""
        super().__init__(pool, k, seed, embedder)
        if not 0.0 <= lambda_mult <= 1.0:
            raise ValueError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
        self.lambda_mult = lambda_mult
        self.fetch_k = fetch_k

    def _rerank(self, relevance: np.ndarray, candidates: np.ndarray) -> list[int]:
        """Greedy MMR over `candidates` (pool indices, best first) given query similarities."""
        vectors = self.pool_vectors[candidates]
        pairwise = vectors @ vectors.T
        chosen: list[int] = []
        redundancy = np.full(len(candidates), -np.inf)
        available = np.ones(len(candidates), dtype=bool)
        for _ in range(min(self.k, len(candidates))):
            if chosen:
                gain = self.lambda_mult * relevance - (1 - self.lambda_mult) * redundancy
            else:
                gain = relevance.astype(np.float64)
            gain = np.where(available, gain, -np.inf)
            best = int(np.argmax(gain))
            chosen.append(best)
            available[best] = False
            redundancy = np.maximum(redundancy, pairwise[best])
        return candidates[chosen].tolist()

    def select_many(self, queries: list[str]) -> list[list[int]]:
        """MMR picks for every query, from one encode call and one matrix product."""
        scores = self.similarities(queries)
        shortlists = top_k_rows(scores, max(self.fetch_k, self.k))
        return [
            self._rerank(scores[row, shortlist], shortlist)
            for row, shortlist in enumerate(shortlists)
        ]


SELECTORS: dict[str, type[ExampleSelector]] = {
    "random": RandomSelector,
    "jaccard": JaccardSelector,
    "embedding": EmbeddingSelector,
    "mmr": MMRSelector,
}


def make_selector(
    name: str,
    pool: list[dict],
    k: int = RunOptions.k,
    seed: int = 0,
    embedder: Embedder | None = None,
) -> ExampleSelector:
    """Build the selector registered as `name`; `embedder` is used by the embedding-based ones."""
    if name not in SELECTORS:
        known = ", ".join(SELECTORS)
        raise AdaptwiseError(f"unknown example selector {name!r}; choose one of: {known}")
    selector_class = SELECTORS[name]
    if issubclass(selector_class, EmbeddingSelector):
        return selector_class(pool, k=k, seed=seed, embedder=embedder)
    return selector_class(pool, k=k, seed=seed)


class LangChainSelector(BaseExampleSelector, BaseModel):
    """Any `ExampleSelector` as a LangChain example selector (e.g. for FewShotPromptTemplate).

    The query is `input_variables["input"]`; the selected pool items are returned as dicts.
    """

    selector: ExampleSelector
    """The adaptwise selector doing the work."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    def add_example(self, example: dict[str, str]) -> None:
        """Add `example` to the wrapped selector's pool and index."""
        self.selector.add(dict(example))

    def select_examples(self, input_variables: dict[str, str]) -> list[dict[str, Any]]:
        """The examples chosen for `input_variables["input"]`, most relevant first."""
        if "input" not in input_variables:
            raise KeyError('LangChainSelector needs the query under input_variables["input"]')
        indices = self.selector.select(input_variables["input"])
        return [dict(self.selector.pool[i]) for i in indices]
