"""Fine-tuning repeated over seeds (`run --seeds N`, `finetune: seeds: N`): how results.json and
predictions.jsonl record a method trained with several seeds.

A method's entry in results.json stays its primary seed's (the first one: the run's --seed, or
the task's `finetune: seed:`), exactly as for a method trained once, so every reader of
`methods` (the reports, `compare`, `export`, `predict`, the climbs, the trusted-results checks)
sees one method with one set of predictions and one trained model (`<out>/lora/`). The entry
adds `seeds`, one item per seed, the primary one first:

    "seeds": [
      {"seed": 0, "metrics": {...}},
      {"seed": 1, "metrics": {...}, "predictions": "lora@seed1", "prepare_s": ..., ...}
    ]

The primary item's predictions are the method's own rows. Each other seed's rows are in
predictions.jsonl under the method name `lora@seed1` (`seed_name`), which is no key of `methods`,
so no reader takes it for a method of its own; its model is trained into `<out>/lora@seed1/`.
The checks of experiments/results.py hold every seed's metrics to its rows as they hold the
method's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

SEPARATOR = "@seed"
# What a seed item keeps of the entry its run made (experiments/run/runner.py run_method).
KEPT = (
    "metrics",
    "metrics_raw",
    "metrics_calibrated",
    "prepare_s",
    "inference_s",
    "peak_memory_mb",
)


def seed_name(name: str, seed: int) -> str:
    """The method name of one seed's prediction records, also its training folder's name."""
    return f"{name}{SEPARATOR}{seed}"


def seed_items(entry) -> list[dict]:
    """The `seeds` items of a method's entry; none for a method trained once."""
    items = entry.get("seeds") if isinstance(entry, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def seed_record(seed: int, entry: dict, predictions: str | None = None) -> dict:
    """One `seeds` item from the entry that seed's run made; `predictions`: the method name of
    its rows (None: the method's own, the primary seed's)."""
    item = {"seed": seed, **{k: entry[k] for k in KEPT if k in entry}}
    if predictions is not None:
        item["predictions"] = predictions
    training = entry.get("training")
    if isinstance(training, dict) and training.get("best_val_loss") is not None:
        item["best_val_loss"] = training["best_val_loss"]
    return item


def prediction_names(methods: dict) -> set[str]:
    """The names under which the methods' other seeds' rows are in predictions.jsonl."""
    return {
        item["predictions"]
        for entry in methods.values()
        for item in seed_items(entry)
        if isinstance(item.get("predictions"), str)
    }


def drop_seeds(predictions: dict, name: str) -> None:
    """Forget the other seeds' predictions of `name` (it runs again, or failed)."""
    for key in [k for k in predictions if k.startswith(f"{name}{SEPARATOR}")]:
        del predictions[key]


def seeds_doubt(name: str, entry, check: Callable[[dict, str], Any], stated: Callable[[str], Any]):
    """Why a method's seeds cannot be trusted, or None: `seeds` must be a list of items, each
    with its own seed, whose rows are the method's (the primary, first) or `seed_name`'s; and
    `check(item, records name)` (experiments/results.py) must find each item's metrics to be
    what those rows give. `stated(text)` makes the doubt about results.json; the doubt says
    which seed."""
    if "seeds" not in entry:
        return None
    items = entry["seeds"]
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return stated("has seeds for it that are not a list of seeds")
    seen: set = set()
    for index, item in enumerate(items):
        seed = item.get("seed")
        own = name if index == 0 else seed_name(name, seed)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed in seen:
            shown = seed if isinstance(seed, int) else repr(seed)
            return stated(f"has seed {shown} for it twice, or not a number")
        if item.get("predictions", name) != own:
            return stated(f"names other rows for its seed {seed}")
        seen.add(seed)
        doubt = check(item, own)
        if doubt is not None:
            return replace(doubt, text=f"{doubt.text} (seed {seed})")
    return None
