"""What the reports say of a method trained with several seeds (experiments/seeds.py): its
seeds' spread, and the rule by which its lead counts.

The rule (docs/report.md, Seeds): a difference between two methods, one or both trained over
several seeds, is significant only when the paired test on the eval rows (McNemar or the paired
bootstrap, as for any two methods) is significant, in the same direction, for every pair of
their seeds. Its p-value is the largest of those tests' p-values, a seed that goes the other way
counting as 1. This is an intersection-union test (Berger 1982): it rejects "some seed does not
lead" only when every seed's own test does, so it keeps the level of each single test with no
correction, and it says what a reader of the verdict wants to know: the lead would have been
called whichever of the seeds had been trained alone."""

from __future__ import annotations

import statistics

from experiments.report import stats
from experiments.seeds import seed_items


def members(name: str, entry: dict) -> list[tuple[int | None, str]]:
    """(seed, prediction records' method name) of each of a method's seeds, the primary one
    first; [(None, name)] for a method trained once."""
    items = seed_items(entry)
    if len(items) < 2:
        return [(None, name)]
    return [(item.get("seed"), item.get("predictions", name)) for item in items]


def across_seeds(primary: dict, each: list[tuple[int | None, int | None, dict]]) -> dict:
    """The primary seeds' test (a PairedTest's dict) with the rule's p-value and significance,
    `p_primary` (its own p) and `seeds`: each pair's seeds, difference and p. `each` holds
    (seed, other's seed, test) for every pair of seeds, the primary pair among them."""
    sign = 1 if primary["diff"] >= 0 else -1
    ps = [test["p"] if test["diff"] * sign > 0 else 1.0 for _, _, test in each]
    p = max(ps)
    return {
        **primary,
        "p": p,
        "significant": p < stats.ALPHA,
        "p_primary": primary["p"],
        "seeds": [
            {"seed": a, "against_seed": b, "diff": test["diff"], "p": test["p"], "p_rule": q}
            for (a, b, test), q in zip(each, ps)
        ],
    }


def weakest(test: dict) -> dict | None:
    """The pair of seeds whose test decides the rule's p-value (None: one seed each)."""
    seeds = test.get("seeds") or []
    return max(seeds, key=lambda s: s["p_rule"]) if seeds else None


def spread(methods: dict, metric: str) -> dict[str, dict]:
    """Method -> its seeds and their `metric` scores, mean, sd (n - 1), min and max, for each
    method trained with more than one seed."""
    out = {}
    for name, entry in methods.items():
        items = seed_items(entry)
        values = [(i.get("seed"), (i.get("metrics") or {}).get(metric)) for i in items]
        values = [(s, v) for s, v in values if isinstance(v, int | float)]
        if len(values) < 2:
            continue
        scores = [v for _, v in values]
        out[name] = {
            "seeds": [s for s, _ in values],
            "scores": scores,
            "mean": statistics.fmean(scores),
            "sd": statistics.stdev(scores),
            "min": min(scores),
            "max": max(scores),
        }
    return out


def seeds_sentence(name: str, test: dict) -> str:
    """How the rule judged a test over seeds, for the significance section."""
    text = (
        f" Over seeds ({len(test['seeds'])} tests, one per pair of seeds) the difference counts "
        "only when every test is significant in the same direction: "
    )
    if test["significant"]:
        return text + f"it is (largest p {test['p']:.3f})."
    return text + f"it is not ({_pair_text(name, test, weakest(test))})."


def _pair_text(name: str, test: dict, low: dict) -> str:
    seed = "" if low["seed"] is None else f" seed {low['seed']}"
    other = "" if low["against_seed"] is None else f" seed {low['against_seed']}"
    p = "p < 0.001" if low["p"] < 0.001 else f"p = {low['p']:.3f}"
    return f"{name}{seed} vs {test['against']}{other}: {low['diff']:+.3f}, {p}"


def unsteady(tests: dict, against: str) -> dict[str, str]:
    """Method -> why its lead over `against` does not hold across its seeds, for each method
    with a seed whose own test is significant and whose rule's is not: the verdict then says
    that the lead depends on the seed, not that more eval rows are needed."""
    out = {}
    for name, by_label in tests.items():
        test = (by_label or {}).get(against)
        if test and test.get("seeds") and not test["significant"]:
            if any(pair["p_rule"] < stats.ALPHA for pair in test["seeds"]):
                out[name] = _pair_text(name, test, weakest(test))
    return out


SEEDS_HEADER = ["method", "seeds", "mean", "sd", "min - max", "each seed"]


def seed_rows(analysis: dict) -> list[list[str]]:
    """One row per method trained with several seeds: its seeds' scores and their spread."""
    rows = []
    for name, s in (analysis.get("seeds") or {}).items():
        each = ", ".join(f"{seed}: {score:.3f}" for seed, score in zip(s["seeds"], s["scores"]))
        spread_text = f"{s['min']:.3f} - {s['max']:.3f}"
        rows.append(
            [name, str(len(s["scores"])), f"{s['mean']:.3f}", f"{s['sd']:.3f}", spread_text, each]
        )
    return rows


def seeds_note(analysis: dict) -> str:
    """What the seeds table means, under it in both reports."""
    return (
        "Each fine-tuning method above was trained once per seed and scored on the same eval "
        "rows; its row in the first table, its interval and its matrix column are its first "
        "seed's, and sd is over seeds (n - 1). Its p-values (the table's, the significance "
        "section's, the verdict's) are over seeds: a lead counts only when the paired test is "
        "significant in the same direction for every seed (an intersection-union test: the "
        "largest of the seeds' p-values)."
    )


def html_section(analysis: dict) -> list[str]:
    """The seeds table of report.html (in the confidence-interval section, under the band)."""
    from html import escape

    rows = seed_rows(analysis)
    if not rows:
        return []
    th = "".join(f"<th>{escape(h)}</th>" for h in SEEDS_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return [
        '<h3 id="seeds">Seeds</h3>',
        f'<table id="seeds-table"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>',
        f'<p class="muted">{escape(seeds_note(analysis))}</p>',
    ]
