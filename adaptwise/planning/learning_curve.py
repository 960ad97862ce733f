"""Learning curves: score methods after training (or, for few-shot, selecting examples) on NESTED
seeded subsets of the train split, e.g. 25%, 50% and 100% of it, all on the same eval rows, and
say whether the curve is still rising (collect more data) or flat (change method or model).

Subsets are prefixes of one seeded permutation of train, so each subset contains the smaller
ones. Each point is an ordinary run folder: the full-data point is the run's own `--out`, the
others `<out>/curve/n<N>/`, so the runner's resuming applies to them (a point's methods are kept
when its folder holds them for the same eval rows, options and train subset).

The verdict rule, per method, on the last step (the two largest subsets), on the same eval rows:
the paired 95% bootstrap interval of the gain (McNemar's bootstrap for accuracy and exact match,
the paired bootstrap otherwise; the report's tests).

- rising: the interval's lower bound is above 0, the last step still helped significantly:
  collect more data of this kind;
- falling: the upper bound is below 0;
- flat: the interval contains 0, the last step's gain is within noise: more of the same data is
  unlikely to pay off, change the method or the model. When the interval is wider than 0.2 the
  verdict says the eval set is too small to tell a gain of that size from noise.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from experiments.errors import AdaptwiseError

WIDE_INTERVAL = 0.2  # a gain interval wider than this: the eval set is too small to tell
PNG_NAME = "learning_curve.png"


def parse_fractions(text: str) -> list[float]:
    """ "0.25,0.5,1.0" -> [0.25, 0.5, 1.0]; one clear line naming the flag for a bad value."""
    values = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise AdaptwiseError(f"--data-fractions {text!r}: {part!r} is not a number") from None
        if not 0 < value <= 1:
            raise AdaptwiseError(
                f"--data-fractions {text!r}: each fraction must be in (0, 1], e.g. 0.25,0.5,1.0"
            )
        values.append(value)
    values = sorted(set(values))
    if len(values) < 2:
        raise AdaptwiseError(
            f"--data-fractions {text!r}: give at least two fractions, e.g. 0.25,0.5,1.0"
        )
    return values


def nested_subsets(rows: list, fractions: list[float], seed: int) -> list[tuple[float, list]]:
    """(fraction, rows) for each fraction: prefixes of one seeded shuffle, so each subset
    contains every smaller one. At least one row each."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    out = []
    for f in fractions:
        n = max(1, min(len(order), round(f * len(order))))
        out.append((f, order[:n]))
    return out


def point_folder(out_dir: Path, n: int, n_total: int) -> Path:
    return Path(out_dir) if n == n_total else Path(out_dir) / "curve" / f"n{n}"


def run_learning_curve(
    task, methods: list[str], fractions: list[float], out_dir: Path, options, progress=None
) -> dict:
    """Run every point (resuming finished ones), then store the `learning_curve` record with the
    verdicts in results.json and plot it next to it."""
    from adaptwise.planning.stored import (
        ensure_results,
        finished_methods,
        metric_interval,
        store_sections,
    )
    from experiments.owned_files import claim
    from experiments.results import eval_fingerprint, options_record
    from experiments.run.runner import SilentProgress, claim_run_folder, run_task

    progress = progress or SilentProgress()
    out_dir = Path(out_dir)
    claim_run_folder(out_dir, task)
    claim(out_dir, "run", ["curve", PNG_NAME])
    rows = task.scored_rows(options.limit)
    record_opts = options_record(options)
    metric = task.metric
    points = []
    for fraction, subset in nested_subsets(task.train, fractions, options.seed):
        n = len(subset)
        folder = point_folder(out_dir, n, len(task.train))
        key = {"n_train": n, "train": eval_fingerprint(subset), "seed": options.seed}
        sub_task = replace(task, train=subset)
        done = finished_methods(
            folder, sub_task, rows, record_opts, match={"curve_point": key}, log=progress.log
        )
        todo = [m for m in methods if m not in done]
        if todo:
            progress.log(f"learning curve: {n} train rows ({fraction:g}): {', '.join(todo)}")
            run_task(sub_task, todo, folder, options, progress, sections={"curve_point": key})
        for m in methods:
            points.append(
                {
                    "method": m,
                    "fraction": fraction,
                    "n_train": n,
                    "folder": str(folder.relative_to(out_dir)) if folder != out_dir else ".",
                    "kept": m in done,
                    "interval": metric_interval(folder, m, metric, options.seed),
                    "seeds": seed_band(folder, m, metric),  # None: trained once
                }
            )
    record = {
        "metric": metric,
        "fractions": fractions,
        "methods": methods,
        "points": points,
        "rule": "last step's paired 95% CI of the gain: above 0 rising, below 0 falling, else flat",
        "verdicts": {
            m: last_step_verdict(out_dir, task, m, [p for p in points if p["method"] == m], options)
            for m in methods
        },
    }
    ensure_results(out_dir, task, rows, record_opts)
    png = plot_curve(record, out_dir / PNG_NAME)
    record["png"] = PNG_NAME if png else None
    store_sections(out_dir, {"learning_curve": record})
    return record


def last_step_verdict(out_dir: Path, task, method: str, points: list[dict], options) -> dict:
    """The paired gain of the last step (two largest subsets) and the verdict (module docstring)."""
    from experiments.report.comparisons import by_method, compare_methods
    from experiments.report.run_folder import load_run

    if len(points) < 2:
        return {"verdict": "n/a", "message": "fewer than two points"}
    prev, last = points[-2], points[-1]
    recs = []
    for p in (last, prev):
        results, records = load_run(Path(out_dir) / p["folder"])
        recs.append(by_method(records).get(method, {}))
    ids = [i for i in recs[0] if i in recs[1]]
    if not ids:
        return {"verdict": "n/a", "message": "no shared eval rows between the last two points"}
    test = compare_methods(
        results["task"],
        task.metric,
        [recs[0][i] for i in ids],
        [recs[1][i] for i in ids],
        options.seed,
        2000,
    )
    return classify_gain(test.diff, test.low, test.high, prev["n_train"], last["n_train"])


def classify_gain(diff: float, low: float, high: float, n_prev: int, n_last: int) -> dict:
    step = f"from {n_prev} to {n_last} train rows"
    gain = f"{diff:+.3f} (95% CI {low:+.3f} to {high:+.3f})"
    if low > 0:
        verdict = "rising"
        message = f"still rising: {step} the metric moved {gain}; collect more data."
    elif high < 0:
        verdict = "falling"
        message = f"falling: {step} the metric moved {gain}; check the added data."
    else:
        verdict = "flat"
        message = (
            f"flat: {step} the metric moved {gain}, within noise; more of the same data is "
            "unlikely to pay off: change the method or the model."
        )
        if high - low > WIDE_INTERVAL:
            message += " (The interval is wide: score more eval rows to tell a smaller gain.)"
    return {
        "verdict": verdict,
        "gain": round(diff, 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "message": message,
    }


def plot_curve(record: dict, path: Path) -> Path | None:
    """Metric against train rows, one line per method, with 95% interval bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    plotted = False
    for m in record["methods"]:
        pts = [p for p in record["points"] if p["method"] == m and p["interval"]]
        if not pts:
            continue
        xs = [p["n_train"] for p in pts]
        ys = [p["interval"]["estimate"] for p in pts]
        lows = [y - _or(p["interval"]["low"], y) for y, p in zip(ys, pts, strict=True)]
        highs = [_or(p["interval"]["high"], y) - y for y, p in zip(ys, pts, strict=True)]
        verdict = record.get("verdicts", {}).get(m, {}).get("verdict", "")
        bars = ax.errorbar(
            xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=f"{m} ({verdict})"
        )
        band = [p for p in pts if p.get("seeds")]
        if band:  # the seeds' range at each point
            ax.fill_between(
                [p["n_train"] for p in band],
                [p["seeds"]["min"] for p in band],
                [p["seeds"]["max"] for p in band],
                color=bars[0].get_color(),
                alpha=0.2,
                label=f"{m}: seeds' range",
            )
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_xlabel("train rows (log scale)")
    ax.set_ylabel(record["metric"])
    ax.set_title("Learning curve (95% bootstrap CIs; shaded: seeds' range)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def seed_band(folder: Path, method: str, metric: str) -> dict | None:
    """The method's seeds at one point (experiments/report/seed_spread.py spread), or None."""
    from experiments.report.seed_spread import spread
    from experiments.run_files import read_results

    return spread((read_results(folder) or {}).get("methods") or {}, metric).get(method)


def _or(value, default):
    return default if value is None else value
