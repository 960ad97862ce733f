"""What the comparison report says, computed once for report.md and report.html: confidence
intervals, paired tests, costs, the Pareto front, the per-example matrix and the verdict.

Input is a run's results.json (as a dict) and its prediction records (the rows of
predictions.jsonl, read by experiments/report/run_folder.py); fields that older runs lack come
out as None ("n/a" in the reports). The row-by-row tests are in comparisons.py, the label
collapse in collapse.py.
"""

from __future__ import annotations

from experiments.report import costs as cost_fns
from experiments.report import seed_spread, stats
from experiments.report.collapse import collapses
from experiments.report.comparisons import (
    by_method,
    compare_methods,
    has_value,
    row_scores,
    statistic_for,
)
from experiments.report.judge_report import judge_analysis

BASELINE = "zero-shot"


def analyse(
    results: dict,
    records: list[dict],
    prices: dict | None = None,
    seed: int | None = None,
    resamples: int = stats.RESAMPLES,
    overrides: dict | None = None,
) -> dict:
    """Everything the reports show, as plain data. `prices` (all methods alike) or `overrides`
    (on each method's own prices: costs.method_prices) set the prices."""
    task, methods = results["task"], results["methods"]
    metric = task["metric"]
    seed = seed if seed is not None else int((results.get("options") or {}).get("seed") or 0)
    given = prices
    prices = prices or cost_fns.prices_for(results, overrides)
    each_prices = cost_fns.method_prices(results, overrides, fixed=given)
    baseline = results.get("baseline") or BASELINE
    preds = by_method(records)
    names = list(methods)
    metric_names = list(  # every method's, in order: a judge may have no verdict of one
        dict.fromkeys(k for e in methods.values() for k in (e.get("metrics") or {}))
    )

    intervals: dict[str, dict[str, dict | None]] = {}
    for name in names:
        rows = list(preds.get(name, {}).values())
        intervals[name] = {}
        for m in metric_names:
            valued = [r for r in rows if has_value(m, r)]
            if not valued:
                intervals[name][m] = None
                continue
            ci = stats.bootstrap_ci(
                statistic_for(task, m, valued), len(valued), seed=seed, resamples=resamples
            )
            intervals[name][m] = ci.to_dict()

    scores = {n: methods[n].get("metrics", {}).get(metric) for n in names}
    scored = {n: s for n, s in scores.items() if s is not None}
    best = max(scored, key=scored.get) if scored else None

    tests = paired_tests(task, methods, preds, (baseline, best), seed, resamples)
    cost = {n: cost_fns.method_costs(methods[n], each_prices[n]) for n in names}
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
        "prices_text": cost_fns.describe_methods(
            prices, each_prices, [n for n in names if cost_fns.served(methods[n])]
        ),
        "monthly_text": _monthly(prices, each_prices, cost),
        "baseline": baseline,
        "pareto": front,
        "matrix": per_example_matrix(task, names, preds, metric),
        "winners": winners(names, scored, tests, cost, best),
        "verdict": advisor_verdict(results, tests),
        "seeds": seed_spread.spread(methods, metric),
        "collapse": collapses(task, names, preds),
        "calibrated": bool((results.get("options") or {}).get("calibrate")),
        "judge": judge_analysis(results, records, intervals),
    }


def paired_tests(
    task: dict, methods: dict, preds: dict, against: tuple, seed: int, resamples: int
) -> dict[str, dict[str, dict | None]]:
    """Method -> "zero-shot" and "best" -> its paired test against the baseline and the best
    method (None: itself, or no shared rows); over seeds for a method trained with several
    (seed_spread.across_seeds: every pair of seeds must agree)."""
    metric = task["metric"]
    baseline, best = against
    names = list(methods)
    tests: dict[str, dict[str, dict | None]] = {}
    for name in names:
        tests[name] = {}
        for label, other in (("zero-shot", baseline), ("best", best)):
            if other is None or other == name or other not in methods:
                tests[name][label] = None
                continue
            pairs = [
                (a, b)
                for a in seed_spread.members(name, methods[name])
                for b in seed_spread.members(other, methods[other])
            ]
            each = []
            for (seed_a, a), (seed_b, b) in pairs:
                test = _paired(task, metric, preds.get(a, {}), preds.get(b, {}), seed, resamples)
                each.append((seed_a, seed_b, test))
            if any(t is None for _, _, t in each):
                tests[name][label] = None
                continue
            test = each[0][2] if len(each) == 1 else seed_spread.across_seeds(each[0][2], each)
            tests[name][label] = {**test, "against": other}
    return tests


def _paired(task: dict, metric: str, a: dict, b: dict, seed: int, resamples: int) -> dict | None:
    """The paired test of two methods' records (row id -> record) on their shared rows."""
    shared = [i for i in a if i in b and has_value(metric, a[i]) and has_value(metric, b[i])]
    if not shared:
        return None
    recs_a, recs_b = [a[i] for i in shared], [b[i] for i in shared]
    return compare_methods(task, metric, recs_a, recs_b, seed, resamples).to_dict()


def _monthly(prices: dict, each_prices: dict, cost: dict) -> str | None:
    volume = cost_fns.queries_per_day(prices, *each_prices.values())
    return None if volume is None else cost_fns.monthly_text(cost, each_prices, volume)


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
    baseline = results.get("baseline") or BASELINE
    if baseline != BASELINE:  # a combined report: its baseline is the advisor's zero-shot
        rename = {baseline: BASELINE}
        results = {
            **results,
            "methods": {rename.get(n, n): e for n, e in results["methods"].items()},
        }
        tests = {rename.get(n, n): t for n, t in (tests or {}).items()}
    answers = answers_from_results(results)
    rec = recommend(answers)
    p_vs = p_values(tests or {})
    judged = verdict(
        rec,
        results,
        p_vs_zero=p_vs["zero-shot"],
        p_vs_best=p_vs["best"],
        unsteady=seed_spread.unsteady(tests or {}, "zero-shot"),
    )
    return {
        "ladder": rec.methods,
        "reasons": {r.method: r.reasons for r in rec.ladder},
        "warnings": rec.warnings,
        "holds": None if judged is None else judged.holds,
        "text": None if judged is None else judged.text,
        "answers": answers.to_dict(),
    }


def p_values(tests: dict) -> dict[str, dict[str, float]]:
    """For "zero-shot" and "best": method -> the p-value of its paired test against that
    method (the significance a verdict needs), from `paired_tests`."""
    return {
        against: {n: t[against]["p"] for n, t in tests.items() if t.get(against)}
        for against in ("zero-shot", "best")
    }


def significance(analysis: dict) -> dict:
    """What the TUI's results screen takes from a run's analysis, as JSON: the best method, the
    p-values of `p_values` and the methods whose lead holds on some seeds only (the verdict's
    inputs, as `advisor_verdict` gives them)."""
    tests = analysis["tests"]
    return {
        "best": analysis["best"],
        "p_values": p_values(tests),
        "unsteady": seed_spread.unsteady(tests, "zero-shot"),
    }
