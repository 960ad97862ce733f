"""The loss curve of one training run, as CSV and as a PNG plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from experiments.atomic import write_text_atomic


def loss_points(log_history: list[dict]) -> list[dict]:
    """Train and validation loss per logged step from a Trainer's `state.log_history`."""
    points: dict[int, dict] = {}
    for entry in log_history:
        step = int(entry.get("step", 0))
        if "loss" in entry:
            point = points.setdefault(step, {"step": step, "epoch": entry.get("epoch")})
            point["train_loss"] = float(entry["loss"])
        if "eval_loss" in entry:
            point = points.setdefault(step, {"step": step, "epoch": entry.get("epoch")})
            point["val_loss"] = float(entry["eval_loss"])
    return [points[s] for s in sorted(points)]


def write_loss_csv(points: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "epoch", "train_loss", "val_loss"])
    for p in points:
        epoch = p.get("epoch")
        writer.writerow(
            [
                p["step"],
                "" if epoch is None else f"{epoch:.3f}",
                _fmt(p.get("train_loss")),
                _fmt(p.get("val_loss")),
            ]
        )
    write_text_atomic(path, buffer.getvalue())


def write_loss_png(points: list[dict], path: Path, title: str, best_step: int | None) -> bool:
    """Plot the curves; return False (and write nothing) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        xs = [p["step"] for p in points if key in p]
        ys = [p[key] for p in points if key in p]
        if xs:
            ax.plot(xs, ys, marker="o" if key == "val_loss" else None, markersize=3, label=label)
    if best_step is not None:
        ax.axvline(best_step, color="grey", linestyle="--", linewidth=1, label="best checkpoint")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return True


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"
