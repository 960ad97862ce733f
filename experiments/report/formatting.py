"""What report.md and report.html both say: metric and test names, numbers, p-values, money and
durations as people read them, the significance and verdict sentences, and the rows of the
ladder, sweep and learning-curve tables. Each renderer lays these out in its own markup."""

from __future__ import annotations

METRIC_TITLES = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "exact_match": "exact match",
    "token_f1": "token F1",
    "rouge_l": "ROUGE-L",
    "judge": "LLM judge",
}


TEST_SHORT = {
    "McNemar exact binomial": "McNemar exact",
    "McNemar chi2 (continuity-corrected)": "McNemar chi2",
    "paired bootstrap": "paired bootstrap",
    "unpaired bootstrap": "unpaired bootstrap",
}


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p: float) -> str:
    """'p < 0.001' or 'p = 0.070', for sentences."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def num_text(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def money_text(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if value < 1 else f"{value:,.2f}"


def significance_sentence(name: str, test: dict, metric: str) -> str:
    other = test["against"]
    text = (
        f"{name} vs {other}: {test['diff']:+.3f} {metric} (95% CI {test['low']:+.3f} to "
        f"{test['high']:+.3f}), {test['test']}"
    )
    if test.get("discordant"):
        b, c = test["discordant"]
        text += f" ({b} rows only {name} got right, {c} only {other})"
    if test.get("seeds"):  # over seeds: the first seed's test, then the rule's
        from experiments.report.seed_spread import seeds_sentence
        from experiments.report.stats import ALPHA

        first = "significant" if test["p_primary"] < ALPHA else "not significant"
        return f"{text}, {p_is(test['p_primary'])} on the first seed: {first}." + seeds_sentence(
            name, test
        )
    text += f", {p_is(test['p'])}: "
    if test["significant"]:
        return text + "significant."
    needed = test.get("rows_needed")
    if needed is None:
        return text + "no difference on these rows."
    return (
        text + f"not significant; about {needed:,} eval rows would resolve a difference this "
        f"size at 80% power (this run has {test['n']})."
    )


def verdict_sentences(analysis: dict) -> list[str]:
    w = analysis["winners"]
    out = []
    if not w:
        return ["No method has a score yet."]
    metric = METRIC_TITLES.get(analysis["metric"], analysis["metric"])
    quality = f"Quality: {w['quality']} ({w['quality_score']:.3f} {metric})"
    if w["runner_up"] is None:
        quality += "."
    elif w["lead_significant"]:
        quality += f", significantly ahead of {w['runner_up']} ({p_is(w['lead_p'])})."
    else:
        tied = ", ".join(w["tied_with_best"])
        quality += (
            f"; its lead over {w['runner_up']} is not significant"
            + (f" ({p_is(w['lead_p'])})" if w["lead_p"] is not None else "")
            + (f"; not significantly worse: {tied}." if tied else ".")
        )
    out.append(quality)
    if w["cost"] == w["quality"] and w["cheapest"] not in (None, w["cost"]):
        out.append(
            f"Cost: {w['cost']} as well: the cheaper methods (cheapest: {w['cheapest']}) are "
            "significantly worse."
        )
    elif w["cost"]:
        out.append(
            f"Cost: {w['cost']}, the cheapest per 1,000 queries of the methods not "
            f"significantly worse than {w['quality']}"
            + (f" (cheapest overall: {w['cheapest']})." if w["cheapest"] != w["cost"] else ".")
        )
    v = analysis.get("verdict")
    if v and v.get("text"):
        out.append(f"Advisor (ladder: {', '.join(v['ladder'])}): {v['text']}")
    out += collapse_sentences(analysis)
    return out


def collapse_sentences(analysis: dict) -> list[str]:
    """One warning per method whose answers collapsed onto one label (collapse.label_collapse)."""
    out = []
    for name, c in (analysis.get("collapse") or {}).items():
        advice = (
            "It ran with --calibrate already: check the instruction and the label names, or "
            "add examples."
            if analysis.get("calibrated")
            else "Rerun with `--calibrate` (contextual calibration removes the model's label "
            "prior) and compare raw and calibrated scores."
        )
        out.append(
            f"Label collapse: {name} answered {c['label']!r} for {c['count']} of {c['n']} rows "
            f"({c['share']:.0%}; {c['gold_share']:.0%} of the gold labels), so its score mostly "
            f"measures that one label. {advice}"
        )
    return out


def fmt_value(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def estimate_cell(estimate_s, measured_s) -> str:
    """ "2m06s / 1m40s (0.79x)": the plan's estimate, the measured time and their ratio."""
    ratio = f" ({measured_s / estimate_s:.2f}x)" if estimate_s and measured_s is not None else ""
    return f"{format_short(estimate_s)} / {format_short(measured_s)}{ratio}"


def interval_text(interval: dict | None) -> str:
    if not interval or interval.get("estimate") is None:
        return "-"
    if interval.get("low") is None:
        return f"{interval['estimate']:.3f}"
    return f"{interval['estimate']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def ladder_rows(ladder: dict) -> list[list[str]]:
    target = ladder.get("target")
    rows = []
    for r in ladder["rungs"]:
        meets = "-" if r.get("meets_target") is None else ("yes" if r["meets_target"] else "no")
        rows.append(
            [
                r["method"],
                r.get("reason") or r["status"],
                interval_text(r.get("interval")),
                meets if target is not None else "-",
                estimate_cell(r.get("estimate_s"), r.get("measured_s")),
            ]
        )
    return rows


def estimate_error(ladder: dict) -> str | None:
    """One line on how far the plan's estimates were from the measured times."""
    pairs = [
        (r["estimate_s"], r["measured_s"])
        for r in ladder["rungs"]
        if r.get("status") == "run" and r.get("estimate_s") and r.get("measured_s") is not None
    ]
    if not pairs:
        return None
    ratios = [m / e for e, m in pairs]
    return (
        f"Measured / estimated time over the {len(pairs)} rung(s) run now: "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x (1.00x is a perfect estimate)."
    )


def sweep_rows(sweep: dict) -> list[list[str]]:
    rows = []
    for t in sorted(sweep["trials"], key=lambda t: t.get("rank") or 10**6):
        rows.append(
            [
                str(t.get("rank") or "-"),
                t["name"],
                ", ".join(f"{k}={v}" for k, v in t["settings"].items()),
                t.get("reason") or t.get("status") or "-",
                fmt_value(t.get("best_val_loss")),
                fmt_value(t.get("final_train_loss")),
                str(t.get("steps") if t.get("steps") is not None else "-"),
                num_text(t.get("train_s"), ".1f"),
            ]
        )
    return rows


SWEEP_HEADER = [
    "rank",
    "trial",
    "settings",
    "status",
    "best val loss",
    "final train loss",
    "steps",
    "train s",
]


def curve_rows(curve: dict) -> list[list[str]]:
    return [
        [
            p["method"],
            f"{p['fraction']:g}",
            str(p["n_train"]),
            interval_text(p.get("interval")),
            "kept" if p.get("kept") else "run",
            p["folder"],
        ]
        for p in curve["points"]
    ]


CURVE_HEADER = ["method", "fraction", "train rows", "metric [95% CI]", "status", "folder"]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_short(seconds: float | None) -> str:
    """Compact durations for tables: 51s, 2m06s, 36m12s, 1h05m."""
    if seconds is None:
        return "-"
    seconds = round(max(0.0, float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def combined_text(results: dict) -> str | None:
    """Which runs a combined report (`adaptwise report DIR1 DIR2 --out`) holds; None otherwise."""
    sources = results.get("combined_from")
    if not isinstance(sources, list) or not sources:
        return None
    parts = [
        f"{s.get('folder')} ({s.get('model')}: {', '.join(s.get('methods') or {})})"
        for s in sources
        if isinstance(s, dict)
    ]
    text = "Combined from " + "; ".join(parts) + "."
    if results.get("baseline"):
        text += f" Baseline of the zero-shot tests and the verdict: {results['baseline']}."
    return text


VERIFY_HEAD = ["method", "server", "scoring", "rows", "agreement", "measured", "served", "p"]


def verify_rows(results: dict) -> list[list[str]]:
    """One row per verified method (`adaptwise verify`): the served model against the run."""
    rows = []
    for name, v in (results.get("verify") or {}).items():
        if not isinstance(v, dict):
            continue
        test = v.get("paired_test") or {}
        verdict = "passed" if v.get("passed") else f"FAILED: {v.get('cause') or 'agreement'}"
        rows.append(
            [
                name,
                str(v.get("server", "")),
                str(v.get("scoring", "")),
                str(v.get("rows", "")),
                f"{v.get('agreement', 0):.3f} (min {v.get('min_agreement', 0):g}), {verdict}",
                f"{v.get('measured', 0):.3f}",
                f"{v.get('served', 0):.3f}",
                f"{test.get('p_value', 1):.3g}",
            ]
        )
    return rows
