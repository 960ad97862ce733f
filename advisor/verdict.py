"""Compare a run's measured results with the recommendation: did the advice hold?"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from advisor.questions import Answers
from advisor.recommend import Recommendation

TIE = 0.02  # differences under 2 points on a small eval set are not a win (see the report's CIs)
ALPHA = 0.05  # significance level of the report's paired tests


@dataclass(frozen=True)
class Verdict:
    holds: bool | None  # None: no verdict yet (a baseline missing, or no significant lead)
    best: str
    best_score: float
    text: str


def answers_from_task(task, answers: Answers | None = None) -> Answers:
    """Pre-fill what the task itself tells: a corpus means external knowledge (and whether
    retrieval can run at all), and the number of labeled train rows picks the data-size answer."""
    answers = answers or Answers()
    n = len(task.train)
    size = "0-49" if n < 50 else "50-499" if n < 500 else "500-4999" if n < 5000 else "5000+"
    knowledge = "yes" if task.corpus is not None else answers.external_knowledge
    return replace(
        answers,
        labeled_examples=size,
        external_knowledge=knowledge,
        has_corpus=task.corpus is not None,
    )


def answers_from_results(results: dict, answers: Answers | None = None) -> Answers:
    """Pre-fill what a run's results.json tells: the data size from its train rows, external
    knowledge when the task has a corpus (or a method retrieved from one), and the measured
    zero-shot score (Meta: under 50%, a few hundred fine-tuning examples tend to help a lot)."""
    answers = answers or Answers()
    task, methods = results.get("task") or {}, results.get("methods") or {}
    n = task.get("n_train")
    if isinstance(n, int):
        size = "0-49" if n < 50 else "50-499" if n < 500 else "500-4999" if n < 5000 else "5000+"
        answers = replace(answers, labeled_examples=size)
    retrieves = any("retrieval" in m or "rag" in m for m in methods.values())
    if task.get("has_corpus") or retrieves:
        answers = replace(answers, external_knowledge="yes", has_corpus=True)
    elif task.get("has_corpus") is False:
        answers = replace(answers, has_corpus=False)
    zero = (methods.get("zero-shot") or {}).get("metrics", {}).get(task.get("metric"))
    if isinstance(zero, int | float) and 0 <= zero <= 1:
        answers = replace(answers, zero_shot_score=float(zero))
    return answers


def _scores(methods: dict, metric: str) -> dict[str, float]:
    """Method -> its score; an LLM judge may have no verdict of a method (every reply
    unparseable), which then has none."""
    return {
        m: e["metrics"][metric] for m, e in methods.items() if metric in (e.get("metrics") or {})
    }


def verdict(
    rec: Recommendation,
    results: dict,
    p_vs_zero: dict[str, float] | None = None,
    p_vs_best: dict[str, float] | None = None,
    unsteady: dict[str, str] | None = None,
) -> Verdict | None:
    """Whether the best measured method is one the advisor put on the ladder (beyond the
    zero-shot baseline), and what that means for the next step.

    It judges only when zero-shot and at least one rung above it were measured; otherwise it
    says what is missing. With `p_vs_zero` (method -> p-value of its paired test against
    zero-shot, from the report) a method is said to have won only when its lead over zero-shot
    is significant; with `p_vs_best` (method -> p-value against the best method) an off-ladder
    winner contradicts the advice only when it is significantly ahead of the ladder's best.
    For a method trained over several seeds the p-values are the report's rule over its seeds
    (experiments/report/seed_spread.py); `unsteady` (method -> the pair of seeds that breaks
    it) names the methods that lead significantly on some seeds and not on every one."""
    metric = results["task"]["metric"]
    scores = _scores(results["methods"], metric)
    if not scores:
        return None
    best = max(scores, key=scores.get)
    top = scores[best]
    missing = _missing(rec, scores)
    if missing:
        return Verdict(None, best, top, f"No verdict yet: {missing} the advice.")
    zero = scores["zero-shot"]
    if best == "zero-shot" or top - zero < TIE:
        return Verdict(
            False,
            best,
            top,
            f"Contradicts the advice: no adaptation beat zero-shot ({zero:.3f}) by "
            f"{TIE:.2f} or more on {metric} (best: {best}, {top:.3f}). Check the data and the "
            "eval set before climbing.",
        )
    p = (p_vs_zero or {}).get(best)
    if p is not None and p >= ALPHA and best in (unsteady or {}):
        return Verdict(
            None,
            best,
            top,
            f"No verdict yet: {best} scored best ({top:.3f} {metric}, zero-shot {zero:.3f}), "
            f"but its lead over zero-shot does not hold across its seeds ({unsteady[best]}): "
            "it may rest on a lucky seed; check the training settings and train more seeds "
            "before relying on it.",
        )
    if p is not None and p >= ALPHA:
        return Verdict(
            None,
            best,
            top,
            f"No verdict yet: {best} scored best ({top:.3f} {metric}, zero-shot {zero:.3f}), "
            f"but its lead over zero-shot is not significant yet ({_p_text(p)}): score more "
            "eval rows before relying on it.",
        )
    if _on_ladder(best, rec):
        return Verdict(True, best, top, _held_text(rec, scores, best, metric, p))
    ladder_best = max((m for m in scores if _on_ladder(m, rec)), key=scores.get)
    gap_p = (p_vs_best or {}).get(ladder_best)
    if gap_p is not None and gap_p >= ALPHA:
        return Verdict(
            None,
            best,
            top,
            f"No verdict yet: {best} ({top:.3f}), not on the recommended ladder, scored best, "
            f"but not significantly above the ladder's {ladder_best} "
            f"({scores[ladder_best]:.3f}; {_p_text(gap_p)}): score more eval rows before "
            "leaving the ladder.",
        )
    return Verdict(
        False,
        best,
        top,
        f"Contradicts the advice: {best} ({top:.3f}) was not on the recommended ladder, yet "
        "scored best. Revisit the answers.",
    )


def _missing(rec: Recommendation, scores: dict) -> str | None:
    """What must be measured before the run can confirm or contradict the advice."""
    rungs = [m for m in rec.methods if m != "zero-shot"]
    has_zero = "zero-shot" in scores
    climbed = not rungs or any(_family(m) != "zero-shot" and _on_ladder(m, rec) for m in scores)
    rung = f"rung of the recommended ladder above zero-shot (first: {rungs[0]})" if rungs else ""
    if not has_zero and not climbed:
        return f"neither zero-shot (the baseline) nor a {rung} was measured; run both to judge"
    if not has_zero:
        return "zero-shot (the baseline) was not measured; run it with the others to judge"
    if not climbed:
        return f"no {rung} was measured; run it with zero-shot to judge"
    return None


def _held_text(rec: Recommendation, scores: dict, best: str, metric: str, p) -> str:
    top = scores[best]
    where = "on the recommended ladder"
    if best not in rec.methods:
        where = f"a variant of the ladder's {_family(best)} rung"
    text = f"The advice held: {best}, {where}, scored best ({top:.3f} {metric})."
    if p is not None:
        text += f" Its lead over zero-shot is significant ({_p_text(p)})."
    cheaper = [m for m in scores if _on_ladder(m, rec) and top - scores[m] < TIE]
    cheaper.sort(key=lambda m: _rung_index(m, rec))
    cheapest = cheaper[0] if cheaper else best
    if cheapest != best:
        text += f" {cheapest} is within {TIE:.2f} and cheaper: prefer it unless the gap matters."
    nxt = _next_rung(rec, scores)
    if nxt:
        text += f" Next rung not yet measured: {nxt}."
    return text


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def _next_rung(rec: Recommendation, scores: dict) -> str | None:
    measured = {_family(m) for m in scores} | set(scores)
    return next((m for m in rec.methods if m not in measured and _family(m) not in measured), None)


def _family(method: str) -> str:
    """The rung a method variant belongs to: few-shot-jaccard-k8 -> few-shot, rag-dense -> rag;
    a combined report's `lora @ MODEL` -> lora."""
    base = re.sub(r"-k\d+$", "", method.split(" @ ")[0])
    for family in ("few-shot", "rag"):
        if base == family or base.startswith(family + "-"):
            return family
    return base


def _on_ladder(method: str, rec: Recommendation) -> bool:
    return method in rec.methods or _family(method) in {_family(m) for m in rec.methods}


def _rung_index(method: str, rec: Recommendation) -> int:
    families = [_family(m) for m in rec.methods]
    if method in rec.methods:
        return rec.methods.index(method)
    return families.index(_family(method)) if _family(method) in families else len(families)
