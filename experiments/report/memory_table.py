"""The report's memory table, shared by report.md and report.html: per fine-tuned method the
precision and memory settings it ran with, the estimate beside the measured peak; and the
methods that ran out of memory, with their estimate and the first change that would fit
(litgpt's resource tables keep their OOM rows the same way)."""

from __future__ import annotations

HEAD = [
    "method",
    "status",
    "precision",
    "settings",
    "estimate GB",
    "measured peak GB",
    "budget GB",
    "what to change",
]


def memory_rows(results: dict) -> list[list[str]]:
    """One row of cells (HEAD) per method with memory settings or a failure; [] when none."""
    rows = []
    for name, m in (results.get("methods") or {}).items():
        memory = m.get("memory")
        if not isinstance(memory, dict) or not memory:
            continue
        training = m.get("training") or {}
        peak = training.get("peak_memory_mb")
        rows.append(
            [
                name,
                "finished",
                str(m.get("precision") or memory.get("precision") or "n/a"),
                settings_text(memory),
                _gb(memory.get("estimate_gb")),
                "n/a" if peak is None else f"{peak / 1000:.2f}",
                _gb(memory.get("budget_gb")),
                "shared base freed while training" if memory.get("shared_base_freed") else "-",
            ]
        )
    for name, f in (results.get("failed") or {}).items():
        if not isinstance(f, dict):
            continue
        memory = f.get("memory") or {}
        rows.append(
            [
                name,
                str(f.get("status", "failed")),
                str(f.get("precision") or memory.get("precision") or "n/a"),
                settings_text(memory) if memory else "n/a",
                _gb(f.get("estimate_gb")),
                "n/a",
                _gb(f.get("budget_gb")),
                str(f.get("suggestion") or f.get("message") or "-"),
            ]
        )
    return rows


def settings_text(memory: dict) -> str:
    if "micro_batch" not in memory:
        return "n/a"
    accumulation = memory.get("gradient_accumulation_steps", 1)
    batch = f"{memory['micro_batch']}x{accumulation}" if accumulation > 1 else memory["micro_batch"]
    checkpointing = "checkpointing" if memory.get("gradient_checkpointing") else "no checkpointing"
    return (
        f"batch {batch}, seq {memory.get('seq', '?')}, {checkpointing}, {memory.get('optimizer')}"
    )


def _gb(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
