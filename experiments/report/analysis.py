"""What the comparison report says, computed once for report.md and report.html: confidence
intervals, paired tests, costs, the Pareto front, the per-example matrix and the verdict.

Input is a run's results.json (as a dict) and its prediction records (the rows of
predictions.jsonl); fields that older runs lack come out as None ("n/a" in the reports).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from experiments import metrics as metric_fns
from experiments.errors import AdaptwiseError
from experiments.report import costs as cost_fns
from experiments.report import stats

BINARY_METRICS = ("accuracy", "exact_match")  # one 0/1 value per row: McNemar's test applies
BASELINE = "zero-shot"
# A method has collapsed onto one label when that label takes over half of its answers and at
# least twice its share of the gold labels (zero-shot on 21 medical codes: "eye" for 53 of 60).
COLLAPSE_SHARE = 0.5
COLLAPSE_RATIO = 2.0
COLLAPSE_MIN_ROWS = 10  # on fewer rows a label taking half the answers is chance


def load_run(folder: Path) -> tuple[dict, list[dict]]:
    """results.json and predictions.jsonl of a run folder; one clear error for bad input."""
    folder = Path(folder)
    if not folder.exists():
        raise AdaptwiseError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise AdaptwiseError(f"{folder}: not a folder; give a run's output folder (--out)")
    path = folder / "results.json"
    if not path.is_file():
        raise AdaptwiseError(f"{folder}: not an adaptwise run folder (no results.json)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results.get("task"), dict) or not isinstance(
            results.get("methods"), dict
        ):
            raise KeyError("task")
        for key in ("name", "kind", "metric"):
            results["task"][key]  # noqa: B018
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError):
        raise AdaptwiseError(f"{path}: not an adaptwise results.json") from None
    for name, entry in results["methods"].items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict) or results["task"]["metric"] not in metrics:
            raise AdaptwiseError(
                f"{path}: method {name!r} has no {results['task']['metric']} (a damaged "
                f"results.json); rerun it with `adaptwise run ... --rerun {name}`"
            )
    records: list[dict] = []
    pred_path = folder / "predictions.jsonl"
    if pred_path.is_file():
        for number, line in enumerate(pred_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["method"], rec["id"]  # noqa: B018
            except (json.JSONDecodeError, KeyError, TypeError):
                raise AdaptwiseError(f"{pred_path}:{number}: not a prediction record") from None
            records.append(rec)
    return results, records


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


def analyse(
    results: dict,
    records: list[dict],
    prices: dict | None = None,
    seed: int | None = None,
    resamples: int = stats.RESAMPLES,
) -> dict:
    """Everything the reports show, as plain data."""
    task, methods = results["task"], results["methods"]
    metric = task["metric"]
    seed = seed if seed is not None else int((results.get("options") or {}).get("seed") or 0)
    prices = prices or cost_fns.prices_for(results)
    preds = by_method(records)
    names = list(methods)
    metric_names = list(next(iter(methods.values())).get("metrics", {})) if methods else []

    intervals: dict[str, dict[str, dict | None]] = {}
    for name in names:
        rows = list(preds.get(name, {}).values())
        intervals[name] = {}
        for m in metric_names:
            if not rows:
                intervals[name][m] = None
                continue
            ci = stats.bootstrap_ci(
                statistic_for(task, m, rows), len(rows), seed=seed, resamples=resamples
            )
            intervals[name][m] = ci.to_dict()

    scores = {n: methods[n].get("metrics", {}).get(metric) for n in names}
    scored = {n: s for n, s in scores.items() if s is not None}
    best = max(scored, key=scored.get) if scored else None

    tests: dict[str, dict[str, dict | None]] = {}
    for name in names:
        tests[name] = {}
        for label, other in (("zero-shot", BASELINE), ("best", best)):
            if other is None or other == name or other not in methods:
                tests[name][label] = None
                continue
            a, b = preds.get(name, {}), preds.get(other, {})
            shared = [i for i in a if i in b]
            if not shared:
                tests[name][label] = None
                continue
            test = compare_methods(
                task, metric, [a[i] for i in shared], [b[i] for i in shared], seed, resamples
            )
            tests[name][label] = {**test.to_dict(), "against": other}

    cost = {n: cost_fns.method_costs(methods[n], prices) for n in names}
    points = {
        n: (scored[n], cost[n]["per_1k_queries"])
        for n in names
        if n in scored and cost[n]["per_1k_queries"] is not None
    }
    front = stats.pareto_front(points)

    return {
        "task": task,
        "metric": metric,
        "metric_names": metric_names,
        "methods": names,
        "seed": seed,
        "resamples": resamples,
        "intervals": intervals,
        "best": best,
        "tests": tests,
        "costs": cost,
        "prices": prices,
        "pareto": front,
        "matrix": per_example_matrix(task, names, preds, metric),
        "winners": winners(names, scored, tests, cost, best),
        "verdict": advisor_verdict(results, tests),
        "collapse": collapses(task, names, preds),
        "calibrated": bool((results.get("options") or {}).get("calibrate")),
    }


def winners(names, scored, tests, cost, best) -> dict:
    """Quality winner (and whether its lead is significant); cost winner: the cheapest method per
    1,000 queries whose quality is not significantly below the quality winner's."""
    if best is None:
        return {}
    runner_up = max((n for n in scored if n != best), key=scored.get, default=None)
    lead_test = (tests.get(runner_up) or {}).get("best") if runner_up else None
    tied = [n for n in names if n != best and n in scored and not _worse(tests, n)]
    priced = {
        n: cost[n]["per_1k_queries"] for n in [best, *tied] if cost[n]["per_1k_queries"] is not None
    }
    cheapest_ok = min(priced, key=priced.get) if priced else None
    all_priced = {
        n: c["per_1k_queries"] for n, c in cost.items() if c["per_1k_queries"] is not None
    }
    return {
        "quality": best,
        "quality_score": scored[best],
        "runner_up": runner_up,
        "lead_p": lead_test["p"] if lead_test else None,
        "lead_significant": bool(lead_test and lead_test["p"] < stats.ALPHA),
        "tied_with_best": tied,
        "cost": cheapest_ok,
        "cheapest": min(all_priced, key=all_priced.get) if all_priced else None,
    }


def _worse(tests: dict, name: str) -> bool:
    test = (tests.get(name) or {}).get("best")
    return bool(test and test["p"] < stats.ALPHA and test["diff"] < 0)


def label_collapse(outputs: list[str], golds: list[str]) -> dict | None:
    """The label one method's answers collapsed onto, or None: the most common answer when it
    takes over COLLAPSE_SHARE of the answers and at least COLLAPSE_RATIO times its gold share."""
    n = len(outputs)
    if n < COLLAPSE_MIN_ROWS or len(golds) != n:
        return None
    label, count = Counter(outputs).most_common(1)[0]
    share, gold_share = count / n, sum(g == label for g in golds) / n
    if share <= COLLAPSE_SHARE or share < COLLAPSE_RATIO * gold_share:
        return None
    return {"label": label, "count": count, "n": n, "share": share, "gold_share": gold_share}


def collapses(task: dict, names: list[str], preds: dict) -> dict[str, dict]:
    """method -> its label collapse (`label_collapse`), for classification tasks."""
    if task.get("kind") != "classification":
        return {}
    out = {}
    for name in names:
        recs = list(preds.get(name, {}).values())
        found = label_collapse(
            [str(r.get("output", "")).strip() for r in recs],
            [str(r.get("gold", "")).strip() for r in recs],
        )
        if found:
            out[name] = found
    return out


def per_example_matrix(task: dict, names: list[str], preds: dict, metric: str) -> list[dict]:
    """One entry per eval row (in the first method's order): gold, and per method its output,
    whether it is correct, and for retrieving methods the retrieved passage ids."""
    order: list[str] = []
    seen = set()
    for name in names:
        for row_id in preds.get(name, {}):
            if row_id not in seen:
                seen.add(row_id)
                order.append(row_id)
    rows = []
    for row_id in order:
        cells = {}
        gold = None
        for name in names:
            rec = preds.get(name, {}).get(row_id)
            if rec is None:
                continue
            gold = rec.get("gold", gold)
            retrieved = rec.get("retrieved")
            cells[name] = {
                "output": str(rec.get("output", "")),
                "correct": bool(rec.get("correct")),
                "score": row_scores(task["kind"], rec).get(metric),
                "retrieved": [str(r.get("id")) for r in retrieved if isinstance(r, dict)]
                if isinstance(retrieved, list)
                else None,
            }
        verdicts = {c["correct"] for c in cells.values()}
        rows.append({"id": row_id, "gold": gold, "cells": cells, "disagree": len(verdicts) > 1})
    return rows


def advisor_verdict(results: dict, tests: dict | None = None) -> dict | None:
    """What the advisor recommends for this task (from what results.json tells) and whether the
    measured results agree: advisor.recommend and advisor.verdict, reused as they are."""
    try:
        from advisor.recommend import recommend
        from advisor.verdict import answers_from_results, verdict
    except ImportError:  # pragma: no cover - advisor ships with experiments
        return None
    answers = answers_from_results(results)
    rec = recommend(answers)
    p_vs = {
        against: {n: t[against]["p"] for n, t in (tests or {}).items() if t.get(against)}
        for against in ("zero-shot", "best")
    }
    judged = verdict(rec, results, p_vs_zero=p_vs["zero-shot"], p_vs_best=p_vs["best"])
    return {
        "ladder": rec.methods,
        "reasons": {r.method: r.reasons for r in rec.ladder},
        "warnings": rec.warnings,
        "holds": None if judged is None else judged.holds,
        "text": None if judged is None else judged.text,
        "answers": answers.to_dict(),
    }


def nan_to_none(value):
    if isinstance(value, float) and (np.isnan(value) or np.isinf(value)):
        return None
    return value


def compare_runs(
    first: tuple[dict, list[dict]],
    second: tuple[dict, list[dict]],
    seed: int = 0,
    resamples: int = stats.RESAMPLES,
    labels: tuple[str, str] = ("first", "second"),
) -> dict:
    """Two runs of the same task, method by method: each metric in each run with its CI, the
    difference (second - first), and a test: paired (McNemar for a binary metric, else the
    paired bootstrap) when the method scored the same eval rows (matched by row id) in both
    runs, else an unpaired bootstrap."""
    (r1, recs1), (r2, recs2) = first, second
    t1, t2 = r1["task"], r2["task"]
    for key in ("name", "kind"):
        if t1.get(key) != t2.get(key):
            raise AdaptwiseError(
                f"{labels[0]} is a run of task {t1.get('name')!r} ({t1.get('kind')}), "
                f"{labels[1]} of {t2.get('name')!r} ({t2.get('kind')}): compare two runs of "
                "the same task"
            )
    if not recs1 or not recs2:
        missing = labels[0] if not recs1 else labels[1]
        raise AdaptwiseError(f"{missing}: no predictions.jsonl records to compare")
    p1, p2 = by_method(recs1), by_method(recs2)
    shared = [m for m in r1["methods"] if m in r2["methods"] and m in p1 and m in p2]
    rows = []
    for name in shared:
        a, b = p1[name], p2[name]
        same_rows = set(a) == set(b)
        ids = list(a)
        metric_names = list(r1["methods"][name].get("metrics", {})) or [t1["metric"]]
        for metric in metric_names:
            ra, rb = list(a.values()), list(b.values())
            ci1 = stats.bootstrap_ci(
                statistic_for(t1, metric, ra), len(ra), seed=seed, resamples=resamples
            )
            ci2 = stats.bootstrap_ci(
                statistic_for(t2, metric, rb), len(rb), seed=seed, resamples=resamples
            )
            if same_rows:
                test = compare_methods(
                    t1, metric, [b[i] for i in ids], [a[i] for i in ids], seed, resamples
                )
                note = None
            else:
                test = stats.unpaired_bootstrap(
                    (statistic_for(t2, metric, rb), len(rb)),
                    (statistic_for(t1, metric, ra), len(ra)),
                    seed=seed,
                    resamples=resamples,
                )
                common = len(set(a) & set(b))
                note = (
                    f"eval rows differ ({common} shared of {len(a)} / {len(b)}): unpaired bootstrap"
                )
            rows.append(
                {
                    "method": name,
                    "metric": metric,
                    "first": ci1.to_dict(),
                    "second": ci2.to_dict(),
                    "n_first": len(a),
                    "n_second": len(b),
                    "test": test.to_dict(),
                    "paired": same_rows,
                    "note": note,
                }
            )
    return {
        "task": t1["name"],
        "primary_metric": t1["metric"],
        "labels": list(labels),
        "rows": rows,
        "only_first": [m for m in r1["methods"] if m not in shared],
        "only_second": [m for m in r2["methods"] if m not in shared],
        "seed": seed,
        "resamples": resamples,
    }
