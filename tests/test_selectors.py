"""Few-shot example selectors: correct picks, determinism, and the LangChain adapter."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.example_selectors import BaseExampleSelector

from experiments.embeddings import Embedder
from experiments.errors import AdaptwiseError, TaskError
from experiments.selectors import (
    SELECTORS,
    EmbeddingSelector,
    JaccardSelector,
    LangChainSelector,
    MMRSelector,
    RandomSelector,
    jaccard_reference,
    make_selector,
    top_k_rows,
)


def as_pool(inputs: list[str]) -> list[dict]:
    return [{"input": text, "output": f"answer {i}"} for i, text in enumerate(inputs)]


# Index 0 and 1 tie exactly, 2 and 4 both score 0 for "the cat", 4 is empty.
TIE_INPUTS = ["The cat sat.", "the CAT sat", "a dog ran", "cat", ""]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_jaccard_hand_made_pool_with_ties() -> None:
    selector = JaccardSelector(as_pool(TIE_INPUTS), k=4)
    # the cat sat: 2/3, the cat sat: 2/3, cat: 1/2, then the 0-0 tie goes to index 2 over 4.
    assert selector.select("the cat") == [0, 1, 3, 2]
    assert jaccard_reference("the cat", TIE_INPUTS, 4) == [0, 1, 3, 2]
    queries = ["the cat", "dog", "", "zebra", "a dog sat"]
    expected = [jaccard_reference(q, TIE_INPUTS, 4) for q in queries]
    assert selector.select_many(queries) == expected
    assert [selector.select(q) for q in queries] == expected


def test_jaccard_similarities_are_exact_fractions() -> None:
    selector = JaccardSelector(as_pool(TIE_INPUTS))
    similarities = selector.similarities(["the cat", "unseen words only"])
    np.testing.assert_array_equal(similarities[0], [2 / 3, 2 / 3, 0.0, 0.5, 0.0])
    np.testing.assert_array_equal(similarities[1], np.zeros(5))


@pytest.mark.parametrize("k", [1, 3, 10, 60])
def test_jaccard_matches_reference_on_random_pool(k: int) -> None:
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(30)]  # small vocabulary: many exact ties

    def sentence() -> str:
        return " ".join(rng.choice(vocabulary, size=int(rng.integers(0, 9))))

    inputs = [sentence() for _ in range(50)]
    queries = [sentence() for _ in range(40)] + ["nothing in the vocabulary"]
    selector = JaccardSelector(as_pool(inputs), k=k)
    expected = [jaccard_reference(q, inputs, k) for q in queries]
    assert selector.select_many(queries) == expected
    assert [selector.select(q) for q in queries] == expected
    assert all(len(picks) == min(k, len(inputs)) for picks in expected)


def test_jaccard_ranks_known_nearest_first() -> None:
    inputs = [
        "What is the boiling point of water at sea level?",
        "Who wrote the novel Moby Dick?",
        "How many legs does a spider have?",
        "Translate good morning into French.",
    ]
    selector = JaccardSelector(as_pool(inputs), k=2)
    assert selector.select("who wrote moby dick")[0] == 1
    assert selector.select("How many legs has a spider?")[0] == 2


def test_top_k_rows_breaks_ties_by_lower_index() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(top_k_rows(scores, 3), [[1, 0, 2], [0, 1, 2]])
    assert top_k_rows(scores, 0).shape == (2, 0)
    np.testing.assert_array_equal(top_k_rows(scores, 99)[0], [1, 0, 2, 3, 4])


def test_random_selector_is_deterministic_per_query_and_varies_across_queries() -> None:
    pool = as_pool([f"example {i}" for i in range(100)])
    selector = RandomSelector(pool, k=5, seed=3)
    first = selector.select("query a")
    selector.select("query b")  # call order must not matter
    assert RandomSelector(pool, k=5, seed=3).select("query a") == first
    assert selector.select("query a") == first
    assert len(set(first)) == 5 and all(0 <= i < 100 for i in first)
    picks = {tuple(selector.select(f"query {i}")) for i in range(20)}
    assert len(picks) > 15
    assert RandomSelector(pool, k=5, seed=4).select("query a") != first
    assert selector.select_many(["query a", "query b"])[0] == first


def test_random_selector_caps_k_at_pool_size() -> None:
    assert sorted(RandomSelector(as_pool(["a", "b"]), k=5).select("q")) == [0, 1]
    assert RandomSelector([], k=5).select("q") == []


def test_embedding_selector_ranks_paraphrase_above_unrelated(embedder: Embedder) -> None:
    inputs = [
        "The stock market fell sharply today.",
        "What is the recipe for chocolate chip cookies?",
        "Which city is the capital of France?",
        "My laptop battery drains very quickly.",
    ]
    selector = EmbeddingSelector(as_pool(inputs), k=4, embedder=embedder)
    query = "Tell me what the French capital city is."
    assert selector.select(query)[0] == 2
    assert selector.select_many([query, "How do I bake cookies?"]) == [
        selector.select(query),
        selector.select("How do I bake cookies?"),
    ]
    assert selector.select("How do I bake cookies?")[0] == 1
    norms = np.linalg.norm(selector.pool_vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_mmr_prefers_a_relevant_different_example_over_a_near_duplicate(
    embedder: Embedder,
) -> None:
    inputs = [
        "How do I reset my password?",
        "How can I reset my password?",  # near-duplicate of 0
        "Which characters are allowed in a password?",  # relevant, different
        "What is the capital of France?",
        "Best recipe for chocolate chip cookies",
        "The stock market fell sharply today",
    ]
    pool = as_pool(inputs)
    query = "How do I change my password?"
    plain = EmbeddingSelector(pool, k=3, embedder=embedder).select(query)
    assert plain[:2] in ([0, 1], [1, 0])  # similarity alone takes both near-duplicates
    picks = MMRSelector(pool, k=3, embedder=embedder).select(query)
    assert len(picks) == len(set(picks)) == 3
    assert picks[0] in (0, 1)
    duplicate_of_first = 1 - picks[0]
    assert picks[1] != duplicate_of_first
    assert picks[1] == 2
    assert MMRSelector(pool, k=3, embedder=embedder).select_many([query, query]) == [picks] * 2


def test_make_selector_builds_each_registered_kind(embedder: Embedder) -> None:
    pool = as_pool(["a b", "c d", "a c"])
    for name, selector_class in SELECTORS.items():
        selector = make_selector(name, pool, k=2, seed=1, embedder=embedder)
        assert type(selector) is selector_class and selector.name == name
        assert len(selector.select("a b")) == 2
    with pytest.raises(AdaptwiseError, match="unknown example selector"):
        make_selector("nearest", pool)
    with pytest.raises(TaskError):
        JaccardSelector([{"input": "no output"}])


def test_langchain_adapter_selects_and_adds_examples() -> None:
    pool = as_pool(["the cat sat on the mat", "a dog barked loudly", "birds sing at dawn"])
    adapter = LangChainSelector(selector=JaccardSelector(pool, k=2))
    assert isinstance(adapter, BaseExampleSelector)
    chosen = adapter.select_examples({"input": "a dog barked at the cat"})
    assert all(isinstance(example, dict) for example in chosen)
    assert chosen[0] == pool[1]
    query = {"input": "fish swim in the deep blue sea"}
    new_example = {"input": "fish swim in the deep sea", "output": "new"}
    assert new_example not in adapter.select_examples(query)
    adapter.add_example(new_example)
    assert adapter.select_examples(query)[0] == new_example


def test_langchain_adapter_add_example_updates_embedding_index(embedder: Embedder) -> None:
    pool = as_pool(["The stock market fell sharply today.", "My laptop battery drains quickly."])
    selector = EmbeddingSelector(pool, k=1, embedder=embedder)
    adapter = LangChainSelector(selector=selector)
    query = {"input": "Which city is the capital of France?"}
    adapter.select_examples(query)  # embeds the pool, so add must append to the index
    adapter.add_example({"input": "What is the capital city of France?", "output": "Paris"})
    assert selector.pool_vectors.shape[0] == 3
    assert adapter.select_examples(query) == [
        {"input": "What is the capital city of France?", "output": "Paris"}
    ]


def test_embedding_pool_is_embedded_in_prepare_not_per_query():
    """few-shot-embedding's inference work per row does not depend on the pool's size: the
    pool is embedded once, in prepare; a query embeds only itself."""
    from experiments.embeddings import QuestionEncoder

    class Counting:
        name = "counting"

        def __init__(self):
            self.texts = 0

        def encode(self, texts, show_progress=False):
            self.texts += len(texts)
            rng = np.random.default_rng(len(texts))
            v = rng.normal(size=(len(texts), 8)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True) if len(texts) else v

    for size in (10, 40):
        model = Counting()
        pool = [{"input": f"example {i}", "output": "x"} for i in range(size)]
        selector = make_selector("embedding", pool, k=2, embedder=QuestionEncoder(model))
        selector.prepare()
        assert model.texts == size
        selector.select_many(["query one", "query two"])
        assert model.texts == size + 2  # per row: the query alone, whatever the pool
