"""Compare a run's measured results with the recommendation: did the advice hold?"""

from __future__ import annotations

from dataclasses import dataclass, replace

from advisor.questions import Answers
from advisor.recommend import Recommendation

TIE = 0.02  # differences under 2 points on a small eval set are not a win (see the report's CIs)


@dataclass(frozen=True)
class Verdict:
    holds: bool
    best: str
    best_score: float
    text: str


def answers_from_task(task, answers: Answers | None = None) -> Answers:
    """Pre-fill what the task itself tells: a corpus means external knowledge, and the number
    of labeled train rows picks the data-size answer."""
    answers = answers or Answers()
    n = len(task.train)
    size = "0-49" if n < 50 else "50-499" if n < 500 else "500-4999" if n < 5000 else "5000+"
    knowledge = "yes" if task.corpus is not None else answers.external_knowledge
    return replace(answers, labeled_examples=size, external_knowledge=knowledge)


def verdict(rec: Recommendation, results: dict) -> Verdict | None:
    """Whether the best measured method is one the advisor put on the ladder (beyond the
    zero-shot baseline), and what that means for the next step."""
    metric = results["task"]["metric"]
    scores = {m: e["metrics"][metric] for m, e in results["methods"].items() if "metrics" in e}
    if not scores:
        return None
    best = max(scores, key=scores.get)
    top = scores[best]
    cheaper = [m for m in rec.methods if m in scores and top - scores[m] < TIE]
    cheapest = cheaper[0] if cheaper else best
    zero = scores.get("zero-shot")
    if best == "zero-shot" or (zero is not None and top - zero < TIE):
        return Verdict(
            False,
            best,
            top,
            f"Contradicts the advice: no adaptation beat zero-shot ({top:.3f}) by "
            f"{TIE:.2f} or more on {metric}. Check the data and the eval set before climbing.",
        )
    if best in rec.methods:
        text = (
            f"The advice held: {best}, on the recommended ladder, scored best ({top:.3f} {metric})."
        )
        if cheapest != best:
            text += (
                f" {cheapest} is within {TIE:.2f} and cheaper: prefer it unless the gap matters."
            )
        nxt = _next_rung(rec, scores)
        if nxt:
            text += f" Next rung not yet measured: {nxt}."
        return Verdict(True, best, top, text)
    return Verdict(
        False,
        best,
        top,
        f"Contradicts the advice: {best} ({top:.3f}) was not on the recommended ladder, yet "
        "scored best. Revisit the answers.",
    )


def _next_rung(rec: Recommendation, scores: dict) -> str | None:
    return next((m for m in rec.methods if m not in scores), None)
