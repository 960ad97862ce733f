"""Comparing methods row by row: the prediction records by method and row id, the per-row score
of a metric, the resampling statistic over aligned records, and the paired test of two methods
(McNemar for a binary metric, else the paired bootstrap)."""

from __future__ import annotations

from experiments import metrics as metric_fns
from experiments.report import stats

BINARY_METRICS = ("accuracy", "exact_match")  # one 0/1 value per row: McNemar's test applies


def by_method(records: list[dict]) -> dict[str, dict[str, dict]]:
    """method -> row id -> record."""
    out: dict[str, dict[str, dict]] = {}
    for rec in records:
        out.setdefault(rec["method"], {})[str(rec["id"])] = rec
    return out


def row_scores(kind: str, rec: dict) -> dict[str, float]:
    scores = rec.get("scores")
    if isinstance(scores, dict) and scores:
        return {k: float(v) for k, v in scores.items()}
    return metric_fns.per_example(kind, str(rec.get("output", "")), str(rec.get("gold", "")))


def has_value(metric: str, rec: dict) -> bool:
    """Whether a record has a value of `metric`: every row has one of the built-in metrics and
    of your own; the LLM judge's is missing where its verdict was unparseable, and such a row
    is left out of the judge's intervals and paired tests (both sides must have parsed)."""
    return metric != "judge" or metric in (rec.get("scores") or {})


def statistic_for(task: dict, metric: str, recs: list[dict]) -> stats.Statistic:
    """The resampling statistic of one metric over aligned records."""
    if metric == "macro_f1":
        return stats.macro_f1_statistic(
            [str(r.get("output", "")) for r in recs],
            [str(r.get("gold", "")) for r in recs],
            task.get("labels"),
        )
    values = [row_scores(task["kind"], r).get(metric, 0.0) for r in recs]
    return stats.mean_statistic(values)


def correct_of(task: dict, metric: str, rec: dict) -> bool:
    if metric in BINARY_METRICS:
        return row_scores(task["kind"], rec).get(metric, 0.0) >= 1.0
    return bool(rec.get("correct"))


def compare_methods(
    task: dict, metric: str, recs_a: list[dict], recs_b: list[dict], seed: int, resamples: int
) -> stats.PairedTest:
    """A vs B on aligned records: McNemar for a binary metric, else the paired bootstrap."""
    n = len(recs_a)
    idx = stats.resample_indices(n, seed, resamples) if n else None
    if metric in BINARY_METRICS:
        return stats.mcnemar_test(
            [correct_of(task, metric, r) for r in recs_a],
            [correct_of(task, metric, r) for r in recs_b],
            indices=idx,
        )
    return stats.paired_bootstrap(
        statistic_for(task, metric, recs_a), statistic_for(task, metric, recs_b), n, indices=idx
    )
