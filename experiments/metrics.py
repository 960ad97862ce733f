"""Scoring functions: pure functions of predicted and gold strings.

Which metrics apply depends on the task kind (`METRICS_BY_KIND`); `score` aggregates over an
eval set, `per_example` gives the per-row values used for error analysis and `row_values` adds
whether the row counts as right (predictions.jsonl's `scores` and `correct`). The task's own
metrics (`python:FILE.py:FUNCTION`, experiments/user_metric.py) come in as per-row values the
caller has from the user's function: `score` averages them, `row_values` adds them to a row's.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

from experiments.errors import TaskError

METRICS_BY_KIND: dict[str, list[str]] = {
    "classification": ["accuracy", "macro_f1"],
    "qa": ["exact_match", "token_f1"],
    # exact_match for outputs with one right form (SQL, code, a fixed format): rouge_l alone
    # credits a query that differs in one column.
    "generation": ["rouge_l", "exact_match"],
}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_WORD = re.compile(r"\w+")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and a/an/the, collapse whitespace."""
    text = s.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(pred: str, gold: str) -> float:
    """1.0 if the normalised answers are identical, else 0.0."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def token_f1(pred: str, gold: str) -> float:
    """SQuAD token F1 over normalised answers, counting repeated tokens (bag of words).

    As in the SQuAD v2 script, if either side has no tokens the score is 1.0 when both are
    empty and 0.0 otherwise.
    """
    pred_tokens = normalize_answer(pred).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, with one rolling DP row."""
    if len(b) > len(a):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0]
        for j, token_b in enumerate(b, start=1):
            if token_a == token_b:
                current.append(previous[j - 1] + 1)
            else:
                current.append(max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(pred: str, gold: str) -> float:
    """ROUGE-L F-measure (beta 1) over lower-cased `\\w+` tokens; 0.0 if either side is empty.

    Hand-written LCS rather than the rouge-score package, which would pull in nltk and absl for
    what is twenty lines. Unlike rouge-score there is no stemming, and `\\w` keeps non-ASCII
    letters instead of dropping them.
    """
    pred_tokens = _WORD.findall(pred.lower())
    gold_tokens = _WORD.findall(gold.lower())
    if not pred_tokens or not gold_tokens:
        return 0.0
    common = _lcs_length(pred_tokens, gold_tokens)
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _check_lengths(preds: Sequence[str], golds: Sequence[str]) -> None:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions but {len(golds)} gold answers")


def _label(text: str) -> str:
    return text.strip()


def accuracy(preds: Sequence[str], golds: Sequence[str]) -> float:
    """Fraction of predictions equal to the gold label (surrounding whitespace ignored).

    Predictions should already be mapped to label strings; 0.0 for an empty eval set.
    """
    _check_lengths(preds, golds)
    if not golds:
        return 0.0
    return sum(_label(p) == _label(g) for p, g in zip(preds, golds)) / len(golds)


def macro_f1(
    preds: Sequence[str], golds: Sequence[str], labels: Sequence[str] | None = None
) -> float:
    """Unweighted mean of per-label F1 (surrounding whitespace ignored).

    The mean runs over the labels in `labels` (every label seen when None or empty) that occur
    in the gold labels or the predictions; a listed label that occurs in neither is left out
    rather than counted as 0. This equals sklearn's
    `f1_score(golds, preds, average="macro", labels=<those labels>)`. A prediction outside the
    averaged labels (e.g. unparsable output) still counts as a miss for its gold label.
    0.0 when no label is averaged.
    """
    _check_lengths(preds, golds)
    pred_labels = [_label(p) for p in preds]
    gold_labels = [_label(g) for g in golds]
    seen = set(pred_labels) | set(gold_labels)
    candidates = {_label(label) for label in labels} if labels else seen
    averaged = sorted(candidates & seen)
    if not averaged:
        return 0.0
    total = 0.0
    for label in averaged:
        true_pos = sum(p == label and g == label for p, g in zip(pred_labels, gold_labels))
        predicted = pred_labels.count(label)
        actual = gold_labels.count(label)
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + actual); nonzero as the label occurs.
        total += 2 * true_pos / (predicted + actual)
    return total / len(averaged)


def _metric_names(kind: str) -> list[str]:
    if kind not in METRICS_BY_KIND:
        known = ", ".join(METRICS_BY_KIND)
        raise TaskError(f"unknown task kind {kind!r}; choose one of: {known}")
    return METRICS_BY_KIND[kind]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def score(
    kind: str,
    preds: Sequence[str],
    golds: Sequence[str],
    labels: Sequence[str] | None = None,
    rows: Sequence[dict[str, float]] | None = None,
    user: Sequence[Mapping[str, float]] | None = None,
) -> dict[str, float]:
    """The metrics of `kind` (see `METRICS_BY_KIND`) over a whole eval set, then the means of
    the task's own metrics from their per-row values `user` (one mapping per prediction).

    `labels` is used by classification's macro-F1 only; `rows` are the `per_example` values of
    `preds` and `golds` where the caller has computed them already (ROUGE-L is not cheap).
    """
    names = _metric_names(kind)
    _check_lengths(preds, golds)
    if kind == "classification":
        out = {"accuracy": accuracy(preds, golds), "macro_f1": macro_f1(preds, golds, labels)}
    else:
        if rows is None:
            rows = [per_example(kind, p, g) for p, g in zip(preds, golds)]
        out = {name: _mean([row[name] for row in rows]) for name in names}
    return {**out, **means(user or [])}


def means(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's mean over the rows that have a value of it (the LLM judge has none on a
    row whose verdict was unparseable: left out, never counted as 0); a metric no row has is
    absent."""
    names = dict.fromkeys(name for row in rows for name in row)
    return {name: _mean([row[name] for row in rows if name in row]) for name in names}


def per_example(kind: str, pred: str, gold: str) -> dict[str, float]:
    """Per-example values of the metrics of `kind`; classification gives only accuracy."""
    _metric_names(kind)
    if kind == "classification":
        return {"accuracy": float(_label(pred) == _label(gold))}
    if kind == "qa":
        return {"exact_match": exact_match(pred, gold), "token_f1": token_f1(pred, gold)}
    return {"rouge_l": rouge_l(pred, gold), "exact_match": exact_match(pred, gold)}


def row_values(
    kind: str, metric: str, pred: str, gold: str, user: Mapping[str, float] | None = None
) -> tuple[dict[str, float], bool | None]:
    """A row's `per_example` values, then its values of the task's own metrics (`user`), and
    whether it counts as right: the task metric's value (else the kind's first) at least 1.0
    (exact match, accuracy, your own metric, the judge: full credit), or 0.5 for rouge_l; None
    when the primary metric is the LLM judge and the row has no verdict of it."""
    values = {**per_example(kind, pred, gold), **(user or {})}
    if metric == "judge" and metric not in values:
        return values, None
    primary = values[metric] if metric in values else next(iter(values.values()))
    threshold = 0.5 if metric == "rouge_l" else 1.0
    return values, primary >= threshold
