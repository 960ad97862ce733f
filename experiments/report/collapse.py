"""Label collapse: a classification method whose answers fell onto one label."""

from __future__ import annotations

from collections import Counter

# A method has collapsed onto one label when that label takes over half of its answers and at
# least twice its share of the gold labels (zero-shot on 21 medical codes: "eye" for 53 of 60).
COLLAPSE_SHARE = 0.5


COLLAPSE_RATIO = 2.0


COLLAPSE_MIN_ROWS = 10  # on fewer rows a label taking half the answers is chance


def label_collapse(outputs: list[str], golds: list[str]) -> dict | None:
    """The label one method's answers collapsed onto, or None: the most common answer when it
    takes over COLLAPSE_SHARE of the answers and at least COLLAPSE_RATIO times its gold share."""
    n = len(outputs)
    if n < COLLAPSE_MIN_ROWS or len(golds) != n:
        return None
    label, count = Counter(outputs).most_common(1)[0]
    share, gold_share = count / n, sum(g == label for g in golds) / n
    if share <= COLLAPSE_SHARE or share < COLLAPSE_RATIO * gold_share:
        return None
    return {"label": label, "count": count, "n": n, "share": share, "gold_share": gold_share}


def collapses(task: dict, names: list[str], preds: dict) -> dict[str, dict]:
    """method -> its label collapse (`label_collapse`), for classification tasks."""
    if task.get("kind") != "classification":
        return {}
    out = {}
    for name in names:
        recs = list(preds.get(name, {}).values())
        found = label_collapse(
            [str(r.get("output", "")).strip() for r in recs],
            [str(r.get("gold", "")).strip() for r in recs],
        )
        if found:
            out[name] = found
    return out
