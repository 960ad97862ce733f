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
    return "\n".join(lines) + "\n"


def _of_total(task: dict) -> str:
    total = task.get("n_eval_total", task["n_eval"])
    return (
        f" (first {task['n_eval']} of {total}; --limit 0 scores all)"
        if total > task["n_eval"]
        else ""
    )
