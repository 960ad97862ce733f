"""Near-duplicate texts by MinHash LSH over character 5-gram shingles (datasketch).

Similarity is the Jaccard index of the two texts' sets of character 5-grams, after case folding,
replacing punctuation by spaces and collapsing whitespace. Character shingles (rather than words)
keep typo'd or re-punctuated copies close. LSH only proposes candidate pairs; every candidate is
then verified with the exact Jaccard index, so a reported pair is never a hashing accident.

THRESHOLD = 0.7, measured: on the two demo tasks the most similar pair of distinct rows (whole
row text, input and output) scores 0.31 (support-intents) and 0.45 (helpdesk-qa). A demo row
of ten or more words with one word replaced scores 0.61 to 1.0 (median 0.79), and 97% of such
edits reach 0.7; a typo scores 0.79 or more, and a change of case, spacing or punctuation 1.0.
Templated questions that differ in one product name ("How much does the Halo A19 bulb cost?"
vs "... the Halo GU10 bulb ...", with different answers) score 0.61 to 0.67: they are distinct
rows, and 0.6 would report them as duplicates (and as leakage, which blocks). 0.7 misses a few
one-word edits of long words to keep those apart.

Rows (`row_pairs`, `row_matches`: what `data check` and `data fix` use) are compared on more
than text. Two rows are the same example only if their answers agree (equal after the same
normalisation; for free text also a near-equal answer with the same numbers; never for two
different labels), and their inputs are compared without the context they share with rows that
have other answers: any run of CONTEXT_WORDS or more words that also occurs in a row with a
different answer (a database schema, a passage, a template) is context, not the row. On a
text-to-SQL set where every input holds its database's schema, whole-input similarity paired
questions that only shared a schema.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import numpy as np

THRESHOLD = 0.7
SHINGLE_CHARS = 5
NUM_PERM = 128
# LSH is asked for pairs well below THRESHOLD so that its banding misses almost no true pair
# near the threshold; the exact check afterwards removes the extra candidates.
CANDIDATE_MARGIN = 0.2
# Six or more words shared with a row that has another answer are context (a schema, a passage,
# a template); shorter shared runs ("what is the price of") are ordinary phrasing, and setting
# them aside would lower the similarity of true copies.
CONTEXT_WORDS = 6
# Free-text answers this similar, with the same numbers, are the same answer re-punctuated or
# with a typo; "... WHERE age > 30" and "... age > 40" differ in a number and stay apart.
ANSWER_THRESHOLD = 0.8
Row = tuple[str, str]  # (input, output)


@functools.lru_cache(maxsize=4096)  # same_answer cleans each answer once per pair it is in
def clean(text: str) -> str:
    """Case-folded text, punctuation replaced by spaces, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.casefold())).strip()


def shingles(text: str, size: int = SHINGLE_CHARS) -> set[str]:
    """The set of character `size`-grams of the normalised text (the whole text if shorter)."""
    clean_text = clean(text)
    if len(clean_text) <= size:
        return {clean_text}
    return {clean_text[i : i + size] for i in range(len(clean_text) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b|, 0 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _lsh(sets: Sequence[set[str]], threshold: float):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=max(0.1, threshold - CANDIDATE_MARGIN), num_perm=NUM_PERM)
    hashes = MinHash.bulk([[s.encode("utf-8") for s in group] for group in sets], num_perm=NUM_PERM)
    return lsh, hashes


def similar_pairs(
    texts: Sequence[str], threshold: float = THRESHOLD
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, of texts at least `threshold` similar, best first."""
    return _set_pairs([shingles(t) for t in texts], threshold)


def best_matches(
    queries: Sequence[str], references: Sequence[str], threshold: float = THRESHOLD
) -> dict[int, tuple[int, float]]:
    """For each query with a reference at least `threshold` similar: (reference index, sim)."""
    return _set_matches(
        [shingles(t) for t in queries], [shingles(t) for t in references], threshold
    )


def row_pairs(
    rows: Sequence[Row], threshold: float = THRESHOLD, labels: bool = False
) -> list[tuple[int, int, float]]:
    """Near-duplicate rows (input, output) of one split, as `similar_pairs`: the same answer
    and similar inputs once shared context is set aside (module docstring). `labels`: the
    outputs are class labels, which must be equal."""
    sets = content_shingles(rows)
    return _set_pairs(sets, threshold, lambda i, j: same_answer(rows[i][1], rows[j][1], labels))


def row_matches(
    queries: Sequence[Row],
    references: Sequence[Row],
    threshold: float = THRESHOLD,
    labels: bool = False,
) -> dict[int, tuple[int, float]]:
    """For each query row with a near-duplicate reference row, as `best_matches`; context is
    found over both sides together (a schema shared by train and eval rows is context)."""
    sets = content_shingles([*queries, *references])
    return _set_matches(
        sets[: len(queries)],
        sets[len(queries) :],
        threshold,
        lambda i, j: same_answer(queries[i][1], references[j][1], labels),
    )


def same_answer(a: str, b: str, labels: bool = False) -> bool:
    """Whether two outputs are the same answer: equal once cleaned; for free text (not
    `labels`) also near-equal with the same numbers."""
    ca, cb = clean(a), clean(b)
    if ca == cb:
        return True
    if labels or re.findall(r"\d+", ca) != re.findall(r"\d+", cb):
        return False
    return jaccard(shingles(ca), shingles(cb)) >= ANSWER_THRESHOLD


def content_shingles(rows: Sequence[Row], n: int = CONTEXT_WORDS) -> list[set[str]]:
    """Each row's input shingles without its context: the words covered by a run of `n` words
    that also occurs in a row with a different answer. An input that is all context is kept
    whole (it is then compared as it is)."""
    words = [clean(text).split() for text, _ in rows]
    covered = _shared_runs(words, [clean(output) for _, output in rows], n)
    out = []
    for ws, mask in zip(words, covered):
        kept: set[str] = set()
        for segment in _segments(ws, mask):
            kept |= shingles(segment)
        out.append(kept or shingles(" ".join(ws)))
    return out


def _segments(words: list[str], covered: np.ndarray) -> list[str]:
    """The runs of words not covered, each joined into one string."""
    segments, current = [], []
    for word, hidden in zip(words, covered):
        if hidden:
            if current:
                segments.append(" ".join(current))
            current = []
        else:
            current.append(word)
    if current:
        segments.append(" ".join(current))
    return segments


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling word-gram hash


def _shared_runs(words: list[list[str]], answers: list[str], n: int) -> list[np.ndarray]:
    """Per row, a mask of its words that lie in an `n`-word gram also found in a row whose
    answer differs. Grams are hashed to 64 bits and grouped by sorting, so memory is a few
    arrays, not a dictionary of every gram."""
    vocab: dict[str, int] = {}
    answer_ids: dict[str, int] = {}
    grams, owners = [], []
    for ws, answer in zip(words, answers):
        ids = np.array([vocab.setdefault(w, len(vocab)) + 1 for w in ws], dtype=np.uint64)
        g = _gram_hashes(ids, n)
        grams.append(g)
        owners.append(np.full(len(g), answer_ids.setdefault(answer, len(answer_ids))))
    every = np.concatenate(grams) if grams else np.empty(0, np.uint64)
    if not len(every):
        return [np.zeros(len(ws), dtype=bool) for ws in words]
    who = np.concatenate(owners)
    order = np.lexsort((who, every))
    every, who = every[order], who[order]
    starts = np.flatnonzero(np.r_[True, every[1:] != every[:-1]])
    mixed = np.minimum.reduceat(who, starts) != np.maximum.reduceat(who, starts)
    shared = every[starts[mixed]]
    masks = []
    for ws, g in zip(words, grams):
        hits = np.flatnonzero(np.isin(g, shared))  # gram i covers words i .. i + n - 1
        depth = np.zeros(len(ws) + 1, dtype=np.int64)
        depth[hits] += 1
        depth[hits + n] -= 1
        masks.append(np.cumsum(depth)[:-1] > 0)
    return masks


def _gram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of each run of `n` consecutive ids (uint64 arithmetic wraps)."""
    m = len(ids) - n + 1
    if m <= 0:
        return np.empty(0, np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    for k in range(n):
        h = h * _MIX + ids[k : k + m]
    return h


Accept = Callable[[int, int], bool]


def _set_pairs(
    sets: Sequence[set[str]], threshold: float, accept: Accept | None = None
) -> list[tuple[int, int, float]]:
    if len(sets) < 2:
        return []
    lsh, hashes = _lsh(sets, threshold)
    pairs: dict[tuple[int, int], float] = {}
    for i, minhash in enumerate(hashes):
        for j in lsh.query(minhash):
            if j < i and (j, i) not in pairs:
                sim = jaccard(sets[i], sets[j])  # before `accept`, which costs more
                if sim >= threshold and (accept is None or accept(j, i)):
                    pairs[(j, i)] = sim
        lsh.insert(i, minhash)
    return sorted(((i, j, s) for (i, j), s in pairs.items()), key=lambda p: (-p[2], p[0], p[1]))


def _set_matches(
    query_sets: Sequence[set[str]],
    ref_sets: Sequence[set[str]],
    threshold: float,
    accept: Accept | None = None,
) -> dict[int, tuple[int, float]]:
    if not query_sets or not ref_sets:
        return {}
    lsh, ref_hashes = _lsh(ref_sets, threshold)
    for j, minhash in enumerate(ref_hashes):
        lsh.insert(j, minhash)
    from datasketch import MinHash

    found: dict[int, tuple[int, float]] = {}
    query_hashes = MinHash.bulk(
        [[s.encode("utf-8") for s in group] for group in query_sets], num_perm=NUM_PERM
    )
    for i, minhash in enumerate(query_hashes):
        similar = ((jaccard(query_sets[i], ref_sets[j]), j) for j in lsh.query(minhash))
        scored = [
            (sim, j)  # `accept`, which costs more, only for pairs similar enough
            for sim, j in similar
            if sim >= threshold and (accept is None or accept(i, j))
        ]
        best = max(scored, default=(0.0, -1), key=lambda p: (p[0], -p[1]))
        if best[0] >= threshold:
            found[i] = (best[1], best[0])
    return found


def clusters(n: int, pairs: Sequence[tuple[int, int, float]]) -> list[list[int]]:
    """Groups of indices linked by `pairs` (union-find), each sorted, groups of 2+ only."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
