"""The figures of report.html, drawn with matplotlib (imported when a report is written, never
at import time) and inlined as SVG data URIs: metrics with their confidence intervals, quality
against cost with the Pareto front, and each fine-tuned method's loss curve."""

from __future__ import annotations

import base64
import csv
import io
from html import escape
from pathlib import Path

from experiments.report import seed_spread
from experiments.report.formatting import METRIC_TITLES


def ci_plot(analysis: dict) -> list[str]:
    import matplotlib.pyplot as plt

    names = analysis["methods"]
    metrics = analysis["metric_names"]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.2 * len(metrics), 0.5 * len(names) + 1.4), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics):
        ys = list(range(len(names)))[::-1]
        for y, name in zip(ys, names):
            ci = analysis["intervals"][name].get(metric)
            if not ci:
                continue
            est = ci["estimate"]
            err = [[max(est - ci["low"], 0)], [max(ci["high"] - est, 0)]]
            color = "#2e7d32" if name == analysis["best"] else "#1565c0"
            ax.errorbar(est, y, xerr=err, fmt="o", color=color, capsize=4)
            seeds = (
                (analysis.get("seeds") or {}).get(name) if metric == analysis["metric"] else None
            )
            if seeds:  # the seeds' band (min to max) and each seed's score
                ax.fill_betweenx(
                    [y - 0.3, y + 0.3], seeds["min"], seeds["max"], color=color, alpha=0.15
                )
                ax.plot(seeds["scores"], [y + 0.2] * len(seeds["scores"]), "|", color=color, ms=9)
        ax.set_yticks(ys, names)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(METRIC_TITLES.get(metric, metric))
        ax.grid(axis="x", alpha=0.3)
    band = " (shaded: the seeds' range, ticks: each seed)" if analysis.get("seeds") else ""
    fig.suptitle(f"Metric with 95% bootstrap CI{band}", fontsize=10)
    fig.tight_layout()
    return [
        '<section id="ci"><h2>Confidence intervals</h2>',
        figure(fig, "Each metric per method with its 95% bootstrap confidence interval"),
        *seed_spread.html_section(analysis),
        "</section>",
    ]


def pareto(analysis: dict) -> list[str]:
    import matplotlib.pyplot as plt

    metric = analysis["metric"]
    cur = analysis["prices"].get("currency", "USD")
    points = {
        n: (analysis["intervals"][n].get(metric) or {}, analysis["costs"][n]["per_1k_queries"])
        for n in analysis["methods"]
    }
    points = {n: (ci, c) for n, (ci, c) in points.items() if ci and c is not None}
    out = ['<section id="pareto"><h2>Quality vs cost</h2>']
    if not points:
        out += ["<p>n/a: no method has both a score and a measured inference time.</p>"]
        return out + ["</section>"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    front = analysis["pareto"]
    for name, (ci, cost) in points.items():
        on = name in front
        ax.errorbar(
            cost,
            ci["estimate"],
            yerr=[[max(ci["estimate"] - ci["low"], 0)], [max(ci["high"] - ci["estimate"], 0)]],
            fmt="o" if on else "s",
            color="#2e7d32" if on else "#9e9e9e",
            capsize=3,
        )
        ax.annotate(name, (cost, ci["estimate"]), textcoords="offset points", xytext=(6, 4))
    ordered = sorted((points[n][1], points[n][0]["estimate"]) for n in front if n in points)
    if len(ordered) > 1:
        ax.plot([c for c, _ in ordered], [q for _, q in ordered], "--", color="#2e7d32", lw=1)
    ax.set_xlabel(f"{cur} per 1,000 queries")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from experiments.report.costs import describe

    prices_text = analysis.get("prices_text") or describe(analysis["prices"])
    out += [
        figure(fig, "Quality against cost per 1,000 queries; the Pareto front in green"),
        "<p>Pareto front (no other method is both better and cheaper): "
        + (", ".join(f'<span class="front">{escape(n)}</span>' for n in front) or "n/a")
        + "</p>",
        f'<p class="muted">{escape(prices_text)} Set prices in the task '
        "file's <code>costs:</code> section or with <code>adaptwise report DIR "
        "--gpu-hour-price ...</code>.</p>",
    ]
    if analysis.get("monthly_text"):
        out.append(f"<p>{escape(analysis['monthly_text'])}</p>")
    out.append("</section>")
    return out


def loss_image(name: str, training: dict, out_dir: Path | None) -> str | None:
    """A data: URI of the loss curve: the run's loss.png, else a plot of its loss.csv."""
    candidates = []
    if out_dir is not None:
        candidates.append(Path(out_dir) / name / "loss.png")
    if training.get("loss_png"):
        candidates.append(Path(training["loss_png"]))
    for path in candidates:
        if path.is_file():
            return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    csvs = []
    if out_dir is not None:
        csvs.append(Path(out_dir) / name / "loss.csv")
    if training.get("loss_csv"):
        csvs.append(Path(training["loss_csv"]))
    for path in csvs:
        if path.is_file():
            return loss_plot_from_csv(path, name)
    return None


def loss_plot_from_csv(path: Path, name: str) -> str | None:
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    plotted = False
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if pts:
            ax.plot(*zip(*pts), marker="o" if key == "val_loss" else None, ms=3, label=label)
            plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{name} loss")
    ax.legend()
    fig.tight_layout()
    return svg_uri(fig)


def svg_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def figure(fig, alt: str) -> str:
    return f'<div class="figure"><img alt="{escape(alt)}" src="{svg_uri(fig)}"></div>'


def setup_matplotlib() -> None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "adaptwise"  # the same run renders the same file
