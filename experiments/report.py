"""report.md: one table, methods as rows, for terminals and pull requests."""

from __future__ import annotations

METRIC_TITLES = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "exact_match": "exact match",
    "token_f1": "token F1",
    "rouge_l": "ROUGE-L",
}


def render_report(results: dict) -> str:
    task = results["task"]
    methods = results["methods"]
    opts = results.get("options", {})
    metric_names = list(next(iter(methods.values()))["metrics"]) if methods else []
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
    header = ["method"] + [METRIC_TITLES.get(m, m) for m in metric_names]
    if calibrated:
        header += [f"{METRIC_TITLES.get(task['metric'], task['metric'])} raw / calibrated"]
    header += ["prep s", "s / example", "prompt tok", "gen tok", "peak MB"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, m in methods.items():
        cells = [name] + [f"{m['metrics'][k]:.3f}" for k in metric_names]
        if calibrated:
            if "metrics_calibrated" in m:
                key = task["metric"]
                cells.append(f"{m['metrics_raw'][key]:.3f} / {m['metrics_calibrated'][key]:.3f}")
            else:
                cells.append("-")
        cells += [
            f"{m['prepare_s']:.1f}",
            f"{m['inference_s_per_example']:.3f}",
            f"{m['prompt_tokens_mean']:.0f}",
            f"{m['generated_tokens_mean']:.1f}",
            f"{m['peak_memory_mb']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if calibrated:
        mode = "calibrated" if opts.get("calibrate", True) else "raw"
        lines.append(
            f"Labels are ranked by log-likelihood; the metric columns use the {mode} scores "
            "(contextual calibration: Zhao et al. 2021)."
        )
    lines.append(
        "Peak memory is " + next(iter(methods.values()))["peak_memory_kind"] + "."
        if methods
        else "No method has finished yet."
    )
    lines += _retrieval_section(methods)
    lines += _training_section(methods)
    return "\n".join(lines) + "\n"


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
        cells = [name] + [_fmt(retrieval.get(k)) for k in metric_keys]
        cells += [
            _fmt(grounding.get("answer_tokens_in_retrieved")),
            _fmt(grounding.get("answer_tokens_in_gold")),
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
            _fmt(t.get("best_val_loss")),
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


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _of_total(task: dict) -> str:
    total = task.get("n_eval_total", task["n_eval"])
    return (
        f" (first {task['n_eval']} of {total}; --limit 0 scores all)"
        if total > task["n_eval"]
        else ""
    )
