"""What a run keeps of the LLM judge, and what it is worth, read back without asking anything.

Each prediction record of a judged method holds `judge`, one entry per check:

    "judge": {
      "judge": {"raw": "...", "verdict": "yes", "value": 1.0, "usage": {...}},      # pointwise
      "judge": {"raw": [".", "."], "verdict": ["A", "tie"], "value": 0.5,           # pairwise
                "against": "the baseline's answer", "usage": {...}},
      "judge": {"self": true, "value": 0.5},                  # pairwise: the baseline itself
      "faithfulness": {"raw": "...", "verdict": "no", "value": 0.0, "usage": {...}},
      "relevance": {...}
    }

`value` is None when the reply had no verdict line (unparseable): such a row has no judge score
and is left out of the judge's mean, intervals and paired tests, and counted. `usage` is the
requests' (prompt and completion tokens, whether the answer came from the cache, seconds).

A method's results.json entry holds `judge` (`summary`): per check the rows judged, the rows
unparseable and the mean, and the usage summed. `problem` is why a stored record or entry is
not what its raw text gives: the report re-reads the verdicts, and runs no judge.
"""

from __future__ import annotations

import math

from experiments import judge_prompts as prompts

USAGE_KEYS = ("requests", "cached", "prompt_tokens", "completion_tokens")


def form_of(spec: dict, check: str) -> str:
    """How `check`'s replies are read: pairwise, 1-5 or binary (the RAG checks: binary)."""
    if check != prompts.METRIC:
        return "binary"
    return "pairwise" if spec.get("mode") == "pairwise" else spec.get("scale", "binary")


def checks_of(spec: dict | None, rec: dict) -> list[str]:
    """The checks a record is judged by: the judge metric, and the RAG checks where the row
    retrieved passages."""
    if not spec:
        return []
    out = [prompts.METRIC] if spec.get("metric") else []
    if passages_of(rec) is not None:
        out += [c for c in spec.get("rag") or [] if c in prompts.CHECKS]
    return out


def passages_of(rec: dict) -> list[str] | None:
    """The texts of the passages a RAG row retrieved (None: the row retrieved nothing)."""
    retrieved = rec.get("retrieved")
    if not isinstance(retrieved, list) or not retrieved:
        return None
    texts = [r.get("text") for r in retrieved if isinstance(r, dict)]
    return texts if all(isinstance(t, str) for t in texts) and texts else None


def expected_value(spec: dict, check: str, entry: dict) -> float | None:
    """What a stored check entry is worth, from its raw text."""
    if entry.get("self") is True:
        return 0.5
    form = form_of(spec, check)
    if form == "pairwise":
        raw = entry.get("raw")
        if not isinstance(raw, list) or len(raw) != 2:
            return None
        return prompts.pairwise_value([prompts.parse(r, "pairwise") for r in raw])
    return prompts.value(prompts.parse(str(entry.get("raw", "")), form), form)


def row_scores(spec: dict | None, rec: dict) -> dict[str, float]:
    """The judge metric's value of a record ({} when not judged, or unparseable)."""
    if not spec or not spec.get("metric"):
        return {}
    entry = (rec.get("judge") or {}).get(prompts.METRIC)
    if not isinstance(entry, dict) or entry.get("value") is None:
        return {}
    return {prompts.METRIC: float(entry["value"])}


def summary(spec: dict | None, recs: list[dict]) -> dict:
    """A method's `judge` entry in results.json from its records (module docstring)."""
    checks: dict[str, dict] = {}
    usage = dict.fromkeys(USAGE_KEYS, 0)
    usage["seconds"] = 0.0
    reported = True
    for rec in recs:
        field = rec.get("judge") if isinstance(rec.get("judge"), dict) else {}
        for check in checks_of(spec, rec):
            entry = field.get(check)
            if not isinstance(entry, dict):
                continue
            figures = checks.setdefault(check, {"judged": 0, "unparseable": 0, "total": 0.0})
            if entry.get("value") is None:
                figures["unparseable"] += 1
            else:
                figures["judged"] += 1
                figures["total"] += float(entry["value"])
            used = entry.get("usage") or {}
            for key in USAGE_KEYS:
                usage[key] += int(used.get(key) or 0)
            usage["seconds"] += float(used.get("seconds") or 0.0)
            reported = reported and bool(used.get("usage_reported", True))
    for figures in checks.values():
        total = figures.pop("total")
        figures["mean"] = total / figures["judged"] if figures["judged"] else None
    if not checks:
        return {}
    usage["seconds"] = round(usage["seconds"], 3)
    return {"checks": checks, "usage": {**usage, "usage_reported": reported}}


def problem(spec: dict | None, entry: dict, recs: list[dict]) -> str | None:
    """Why a method's judge records or its entry's `judge` are not what the raw replies give
    (a sentence starting with the file), or None."""
    if not spec:
        return None
    for rec in recs:
        field = rec.get("judge")
        if field is None:
            continue
        if not isinstance(field, dict):
            return f"predictions.jsonl has judge {field!r:.40} for its row {rec['id']}"
        for check in checks_of(spec, rec):
            stored = field.get(check)
            if stored is None:
                continue
            if not isinstance(stored, dict):
                return f"predictions.jsonl has a {check} verdict for its row {rec['id']}, not one"
            given, said = expected_value(spec, check, stored), stored.get("value")
            if not _same(said, given):
                return (
                    f"predictions.jsonl says its row {rec['id']} was judged {check} {said!r} but "
                    f"the judge's reply gives {given!r}"
                )
    stated = entry.get("judge") if isinstance(entry, dict) else None
    given = summary(spec, recs)
    if (stated or {}) != given and not _close(stated, given):
        return "results.json has a judge summary for it that its judged rows do not give"
    return None


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (
        isinstance(a, int | float) and not isinstance(a, bool) and math.isclose(a, b, abs_tol=1e-9)
    )


def _close(a, b) -> bool:
    """Two summaries equal but for float rounding."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return _same(a, b)
    return a == b


def judged_correct(spec: dict, rec: dict) -> bool | None:
    """Whether the pointwise judge calls a record right (None: unjudged or unparseable)."""
    value = row_scores(spec, rec).get(prompts.METRIC)
    if value is None:
        return None
    return prompts.says_correct(value, form_of(spec, prompts.METRIC))


def forget_stale(old_task: dict, task: dict, methods: dict, recs: list[dict]) -> bool:
    """When the judge block is not the one the stored verdicts were made with (another digest,
    or a judge added or dropped), drop them from the rows (their `judge`, their judge score
    and `correct`, which the runner writes again) and from the methods' metrics and entries,
    in place: the runner asks again (answers cached before cost nothing). Whether it did."""
    before, now = old_task.get("judge"), task.get("judge")
    digest = (before or {}).get("digest") if isinstance(before, dict) else before
    if digest == (now or {}).get("digest"):
        return False
    for rec in recs:
        if rec.pop("judge", None) is not None or prompts.METRIC in (rec.get("scores") or {}):
            if isinstance(rec.get("scores"), dict):
                rec["scores"].pop(prompts.METRIC, None)
            rec.pop("correct", None)
    for entry in methods.values():
        if isinstance(entry, dict):
            entry.pop("judge", None)
            if isinstance(entry.get("metrics"), dict):
                entry["metrics"].pop(prompts.METRIC, None)
    return True
