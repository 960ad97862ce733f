"""report.md, for terminals and pull requests: the comparison as markdown tables and sentences,
rendered from results.json and the analysis (experiments/report/analysis.py). What it shares
with report.html is in formatting.py; write.py writes both."""

from __future__ import annotations

import re

from experiments.plain_text import plain
from experiments.report import seed_spread
from experiments.report.formatting import (
    CURVE_HEADER,
    METRIC_TITLES,
    SWEEP_HEADER,
    combined_text,
    curve_rows,
    estimate_error,
    fmt_value,
    format_duration,
    ladder_rows,
    money_text,
    num_text,
    p_text,
    significance_sentence,
    sweep_rows,
    verdict_sentences,
)
from experiments.report.judge_report import judge_markdown


def render_report(results: dict, analysis: dict | None = None) -> str:
    if analysis is None:
        from experiments.report.analysis import analyse

        analysis = analyse(results, [])
    task = results["task"]
    methods = results["methods"]
    opts = results.get("options", {})
    metric_names = analysis["metric_names"]
    calibrated = any("metrics_calibrated" in m for m in methods.values())
    lines = [
        f"# {task['name']} ({task['kind']})",
        "",
        (
            f"Eval rows: {task['n_eval']}{_of_total(task)} · train rows: {task['n_train']} · "
            f"model: {opts.get('model', '?')} · seed: {opts.get('seed', '?')} · "
            f"few-shot k: {opts.get('k', '?')}"
        ),
        "",
    ]
    if combined_text(results):
        lines += [combined_text(results), ""]
    lines += _methods_table(results, analysis, metric_names, calibrated)
    if calibrated:
        mode = "calibrated" if opts.get("calibrate", True) else "raw"
        lines.append(
            f"Labels are ranked by log-likelihood; the metric columns use the {mode} scores "
            "(contextual calibration: Zhao et al. 2021)."
        )
    lines.append(
        "Peak memory is " + next(iter(methods.values())).get("peak_memory_kind", "n/a") + "."
        if methods
        else "No method has finished yet."
    )
    if methods:
        lines += _seeds_section(analysis) + _stats_notes(analysis)
        lines += _significance_section(analysis)
        lines += _cost_section(analysis)
        lines += _verdict_section(analysis)
    lines += _retrieval_section(methods)
    lines += judge_markdown(analysis) if methods else []
    lines += _training_section(methods)
    lines += _memory_section(results)
    lines += ladder_section(results)
    lines += sweep_section(results)
    lines += curve_section(results)
    lines += _verify_section(results)
    return no_raw_html(plain("\n".join(lines) + "\n"))  # no terminal escapes, no raw HTML


def _methods_table(
    results: dict, analysis: dict, metric_names: list, calibrated: bool
) -> list[str]:
    """The table of every method: its metrics with intervals, p-values, time, tokens, memory
    and cost."""
    task, methods = results["task"], results["methods"]
    costs, tests, intervals = analysis["costs"], analysis["tests"], analysis["intervals"]
    cur = analysis["prices"].get("currency", "USD")
    lines = []
    header = ["method"] + [f"{METRIC_TITLES.get(m, m)} [95% CI]" for m in metric_names]
    raw_key = task["metric"]
    if calibrated:  # your own metric scores the chosen labels alone: then the kind's first
        raw = next(m["metrics_raw"] for m in methods.values() if "metrics_raw" in m)
        raw_key = raw_key if raw_key in raw else next(iter(raw))
        header += [f"{METRIC_TITLES.get(raw_key, raw_key)} raw / calibrated"]
    header += ["p vs zero-shot", "p vs best", "prep s", "s / example", "p50 / p95 s"]
    header += ["prompt tok", "gen tok", "peak MB", f"{cur} / 1k queries", f"{cur} / prep"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, m in methods.items():
        cells = [name]
        cells += [_ci_cell(m["metrics"].get(k), intervals[name].get(k)) for k in metric_names]
        if calibrated:
            if "metrics_calibrated" in m:
                raws = (m["metrics_raw"][raw_key], m["metrics_calibrated"][raw_key])
                cells.append(f"{raws[0]:.3f} / {raws[1]:.3f}")
            else:
                cells.append("-")
        c = costs[name]
        cells += [
            _p_cell(tests[name].get("zero-shot")),
            _p_cell(tests[name].get("best")),
            num_text(c["prepare_s"], ".1f"),
            num_text(c["latency_mean_s"], ".3f"),
            f"{num_text(c['latency_p50_s'], '.3f')} / {num_text(c['latency_p95_s'], '.3f')}",
            num_text(c["prompt_tokens"], ".0f"),
            num_text(c["generated_tokens"], ".1f"),
            num_text(c["peak_memory_mb"], ".0f"),
            money_text(c["per_1k_queries"]),
            money_text(c["per_preparation"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def no_raw_html(markdown: str) -> str:
    """Markdown with every tag opening (`<b`, `</`, `<!--`) written as `&lt;`: task names,
    labels and model names come from the user's files, and a markdown viewer would run
    `<script>` or `<img onerror=...>` in them. A `<` before a space or a digit ("p < 0.05")
    opens no tag and stays as it is."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", markdown)


def _ci_cell(value, ci: dict | None) -> str:
    if value is None:
        return "n/a"
    if not ci:
        return f"{value:.3f}"
    return f"{value:.3f} [{ci['low']:.2f}, {ci['high']:.2f}]"


def _seeds_section(analysis: dict) -> list[str]:
    rows = seed_spread.seed_rows(analysis)
    if not rows:
        return []
    lines = ["", "## Seeds", "", "| " + " | ".join(seed_spread.SEEDS_HEADER) + " |"]
    lines.append("|---|" + "---:|" * 5)
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + ["", seed_spread.seeds_note(analysis)]


def _p_cell(test: dict | None) -> str:
    if not test:
        return "-"
    star = "*" if test["significant"] else ""
    return f"{p_text(test['p'])}{star}"


def _stats_notes(analysis: dict) -> list[str]:
    metric = METRIC_TITLES.get(analysis["metric"], analysis["metric"])
    return [
        "",
        f"95% CIs: percentile bootstrap over eval rows ({analysis['resamples']} resamples, "
        f"seed {analysis['seed']}). p-values on {metric}, each method against zero-shot and "
        "against the best method on the same rows: "
        + (
            "McNemar's test (exact binomial below 25 discordant rows, else chi-squared with "
            "continuity correction)"
            if analysis["metric"] in ("accuracy", "exact_match")
            else "paired bootstrap"
        )
        + "; * marks p < 0.05 (not corrected for multiple comparisons). Latency p50 / p95 is "
        "batch time / batch size, per row.",
    ]


def _significance_section(analysis: dict) -> list[str]:
    lines = ["", "## Significance", ""]
    metric = METRIC_TITLES.get(analysis["metric"], analysis["metric"])
    done = set()
    for name in analysis["methods"]:
        for label in ("zero-shot", "best"):
            test = analysis["tests"][name].get(label)
            if not test:
                continue
            key = frozenset((name, test["against"]))
            if key in done:
                continue
            done.add(key)
            lines.append("- " + significance_sentence(name, test, metric))
    if len(lines) == 3:
        lines.append("- Nothing to compare yet (one method, or no prediction records).")
    return lines


def _cost_section(analysis: dict) -> list[str]:
    from experiments.report.costs import describe

    front = analysis["pareto"]
    lines = ["", "## Quality vs cost", ""]
    lines.append(
        "Pareto front (no other method is both better and cheaper per 1,000 queries): "
        + (", ".join(front) if front else "n/a")
        + "."
    )
    lines += ["", analysis.get("prices_text") or describe(analysis["prices"])]
    if analysis.get("monthly_text"):
        lines += ["", analysis["monthly_text"]]
    return lines


def _verdict_section(analysis: dict) -> list[str]:
    lines = ["", "## Verdict", ""]
    lines += ["- " + t for t in verdict_sentences(analysis)]
    return lines


def _retrieval_section(methods: dict) -> list[str]:
    """Retrieval metrics and grounding, for methods that retrieve (their entries carry them)."""
    rows = {n: m for n, m in methods.items() if "retrieval" in m or "grounding" in m}
    if not rows:
        return []
    metric_keys: list[str] = []
    for m in rows.values():
        for key in m.get("retrieval", {}):
            if key != "n_queries" and key not in metric_keys:
                metric_keys.append(key)
    header = ["method", *metric_keys, "answer tokens in retrieved", "in gold passages"]
    lines = [
        "",
        "## Retrieval",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name, m in rows.items():
        retrieval, grounding = m.get("retrieval", {}), m.get("grounding", {})
        cells = [name] + [fmt_value(retrieval.get(k)) for k in metric_keys]
        cells += [
            fmt_value(grounding.get("answer_tokens_in_retrieved")),
            fmt_value(grounding.get("answer_tokens_in_gold")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "recall@k and MRR@10 are over the documents of the retrieved chunks, against each eval "
        "row's `context_ids` (BEIR definitions). The last two columns are the share of answer "
        "tokens found in the retrieved passages and in the gold documents: a judge-free "
        "grounding check.",
    ]
    return lines


def _memory_section(results: dict) -> list[str]:
    from experiments.report.memory_table import HEAD, memory_rows

    rows = memory_rows(results)
    if not rows:
        return []
    lines = ["", "## Memory", ""]
    lines.append("| " + " | ".join(HEAD) + " |")
    lines.append("|" + "|".join(["---"] * len(HEAD)) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    lines.append("")
    lines.append(
        "Estimates come from advisor/memory.py for the settings each method ran with; the fit "
        "chose the settings marked auto (finetune fit: auto). Peak memory is "
        + (
            next(iter(results["methods"].values())).get("peak_memory_kind", "n/a")
            if results.get("methods")
            else "n/a"
        )
        + "."
    )
    return lines


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _training_section(methods: dict) -> list[str]:
    """What fine-tuning cost and how its loss went, for methods whose entries carry `training`."""
    rows = {n: m["training"] for n, m in methods.items() if isinstance(m.get("training"), dict)}
    if not rows:
        return []
    header = [
        "method",
        "trainable / total params",
        "train tokens",
        "epochs",
        "steps",
        "train s",
        "tokens / s",
        "peak MB",
        "best val loss",
        "forgetting probe before / after",
    ]
    lines = [
        "",
        "## Training",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name, t in rows.items():
        probe = methods[name].get("forgetting") or {}
        before, after = probe.get("accuracy_before"), probe.get("accuracy_after")
        stopped = " (stopped early)" if t.get("stopped_early") else ""
        cells = [
            name + (f" ({t['fallback']})" if t.get("fallback") else ""),
            f"{t.get('trainable_params', 0):,} / {t.get('total_params', 0):,}",
            f"{t.get('train_tokens', 0):,}",
            f"{t.get('epochs', 0):.2f}{stopped}",
            str(t.get("steps", "-")),
            f"{t.get('train_wall_s', 0):.1f}",
            "-" if t.get("tokens_per_s") is None else f"{t['tokens_per_s']:.0f}",
            f"{t.get('peak_memory_mb', 0):.0f}",
            fmt_value(t.get("best_val_loss")),
            "-" if before is None else f"{before:.3f} / {after:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Loss is on the answer tokens only (prompt tokens are masked). Peak memory during "
        "training is " + next(iter(rows.values())).get("peak_memory_kind", "process RSS") + ".",
    ]
    for name, t in rows.items():
        if t.get("loss_png"):
            lines += ["", f"![{name} loss curve]({name}/loss.png) ([CSV]({name}/loss.csv))"]
    return lines


def _of_total(task: dict) -> str:
    total = task.get("n_eval_total", task["n_eval"])
    return (
        f" (first {task['n_eval']} of {total}; --limit 0 scores all)"
        if total > task["n_eval"]
        else ""
    )


# --- ladder, sweep and learning curve (adaptwise/planning/: ladder, sweep, learning_curve) ----


def ladder_section(results: dict) -> list[str]:
    ladder = results.get("ladder")
    if not isinstance(ladder, dict) or not ladder.get("rungs"):
        return []
    metric = METRIC_TITLES.get(ladder["metric"], ladder["metric"])
    goal = f"{metric} >= {ladder['target']:g}" if ladder.get("target") is not None else "none"
    budget = format_duration(ladder["budget_s"]) if ladder.get("budget_s") else "none"
    header = ["rung", "status", f"{metric} [95% CI]", "CI lower bound meets target"]
    header += ["estimated / measured"]
    lines = [
        "",
        "## Ladder",
        "",
        f"Target: {goal} (met when the 95% interval's lower bound reaches it) · budget: {budget}"
        f" · time spent: {format_duration(ladder.get('elapsed_s'))}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in ladder_rows(ladder)]
    lines += ["", f"**{ladder.get('message') or 'The climb is under way.'}**"]
    error = estimate_error(ladder)
    lines += [
        "",
        "Estimated times are the plan's (`adaptwise plan`: preparation + scoring); measured is "
        "preparation + scoring in this run (prepare_s + inference_s)."
        + (f" {error}" if error else ""),
    ]
    return lines


def sweep_section(results: dict) -> list[str]:
    sweep = results.get("sweep")
    if not isinstance(sweep, dict) or not sweep.get("trials"):
        return []
    lines = [
        "",
        f"## Sweep ({sweep['method']})",
        "",
        "Trials are ranked on the validation split (the trainer's best validation loss); the "
        "eval set is never used to choose. Only the winner is scored on eval, as "
        f"`{sweep['method']}` in the table above.",
        "",
        "| " + " | ".join(SWEEP_HEADER) + " |",
        "|" + "|".join(["---:", "---", "---", "---"] + ["---:"] * 4) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in sweep_rows(sweep)]
    if sweep.get("message"):
        lines += ["", f"**{sweep['message']}**"]
    return lines


def curve_section(results: dict) -> list[str]:
    curve = results.get("learning_curve")
    if not isinstance(curve, dict) or not curve.get("points"):
        return []
    metric = METRIC_TITLES.get(curve["metric"], curve["metric"])
    header = [metric + " [95% CI]" if h == "metric [95% CI]" else h for h in CURVE_HEADER]
    lines = [
        "",
        "## Learning curve",
        "",
        "Each point trains (or, for few-shot, draws its examples from) a nested seeded subset of "
        "train and is scored on the same eval rows.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", "---", "---"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in curve_rows(curve)]
    lines.append("")
    for m, v in (curve.get("verdicts") or {}).items():
        lines.append(f"- **{m}**: {v.get('message', 'n/a')}")
    lines += [
        "",
        "Rule: the paired 95% bootstrap interval of the last step's gain (the two largest "
        "subsets, same eval rows): above 0 rising (collect more data), below 0 falling, "
        "containing 0 flat (change the method or the model).",
    ]
    if curve.get("png"):
        lines += ["", f"![learning curve]({curve['png']})"]
    return lines


def _verify_section(results: dict) -> list[str]:
    """`adaptwise verify`: the served model against the measured method, row by row."""
    from experiments.report.formatting import VERIFY_HEAD, verify_rows

    rows = verify_rows(results)
    if not rows:
        return []
    lines = ["", "## Served vs measured", ""]
    lines += ["Each method's eval rows sent to its served model with the run's exact prompts "]
    lines[-1] += "(`adaptwise verify`; the rows that differ are in verify.json)."
    lines += ["", "| " + " | ".join(VERIFY_HEAD) + " |", "|" + "---|" * len(VERIFY_HEAD)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines
