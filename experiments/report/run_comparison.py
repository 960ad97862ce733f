"""Two runs of the same task compared, method by method (`adaptwise compare`)."""

from __future__ import annotations

from experiments.errors import AdaptwiseError
from experiments.report import stats
from experiments.report.comparisons import by_method, compare_methods, statistic_for


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
