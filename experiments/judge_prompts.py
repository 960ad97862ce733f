"""The LLM judge's fixed prompts, how its answers are read, and what a verdict is worth.

Every question is one chat turn after two worked examples (fixed question/reply turns: one right
answer, one wrong, so that even a small model learns the reply's form), and ends by asking for
a last line in a fixed form:

- `VERDICT: yes` / `VERDICT: no`: pointwise on the binary scale, and the RAG checks
  (faithfulness: every claim of the answer is supported by the retrieved passages; relevance:
  the answer addresses the question);
- `SCORE: n` with n from 1 to 5: pointwise on the 1-5 scale, worth (n - 1) / 4;
- `VERDICT: A` / `VERDICT: B` / `VERDICT: tie`: pairwise, the method's answer against the
  baseline's, asked twice with the answers in both orders (position bias cancels).

An answer is read by one regular expression on its lines, the last line that matches winning:
the keyword, then the verdict, and nothing after it but punctuation (`**VERDICT:** yes.` is
read; `VERDICT: yes/no`, an echo of the instructions, is not). A reply with no such line is
unparseable: its value is None, and it is never scored as 0 (experiments/judge.py).

Pairwise, per row: both orders for the method (A then B) is a win (1), both against it a loss
(0), both tie a tie (0.5); when the two orders disagree the row is a tie (0.5). The baseline
itself scores 0.5 on every row without a request (a tie with itself).

Here too is what a stored judge record is worth (the report re-reads the raw text, runs nothing).
"""

from __future__ import annotations

import re

PROMPTS_VERSION = 1  # part of the judge's digest: a changed template re-asks the judge
CHECKS = ("faithfulness", "relevance")  # the RAG checks
SCALES = ("binary", "1-5")
MODES = ("pointwise", "pairwise")
METRIC = "judge"  # the judge's metric name in metric:/metrics:, scores and metrics

SYSTEM = "You are a careful, strict grader. Give one short reason, then the final line asked for."

DEFAULT_RUBRIC = {
    "pointwise": "The answer is correct when it says what the reference answer says.",
    "pairwise": "The better answer is the one that is correct and says what the reference says.",
}

_ASK = {
    "binary": "Is the answer correct by the rubric? End with one line: VERDICT: yes or VERDICT: no",
    "1-5": "Rate the answer from 1 (wrong) to 5 (fully correct) by the rubric. End with one "
    "line: SCORE: n (n from 1 to 5)",
}

_POINTWISE = """Rubric: {rubric}

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

{ask}"""

_PAIRWISE = """Rubric: {rubric}

Question:
{question}

Reference answer:
{reference}

Answer A:
{first}

Answer B:
{second}

Which answer is better by the rubric? End with one line: VERDICT: A, VERDICT: B or VERDICT: tie"""

_FAITHFULNESS = """Passages:
{passages}

Question:
{question}

Answer:
{answer}

Is every claim of the answer supported by the passages? End with one line: VERDICT: yes or \
VERDICT: no"""

_RELEVANCE = """Question:
{question}

Answer:
{answer}

Does the answer address the question (whether or not it is correct)? End with one line: \
VERDICT: yes or VERDICT: no"""

_VERDICT = re.compile(r"^\W*verdict\W*(yes|no|a|b|tie)\W*$", re.IGNORECASE)
_SCORE = re.compile(r"^\W*score\W*([1-5])(?:\s*(?:/|out of)\s*5)?\W*$", re.IGNORECASE)
_ALLOWED = {"binary": {"yes", "no"}, "pairwise": {"a", "b", "tie"}}


_SKY = ("What colour is the sky on a clear day?", "blue")
_SPIDER = ("How many legs does a spider have?", "8")
_LAMP = "[1] The Orbit lamp costs 40 euros and comes in white."


def _examples(form: str, rubric: str) -> list[tuple[str, str]]:
    """Two (question, reply) turns that show `form`'s reply: one right answer, one wrong."""
    if form == "pairwise":
        return [
            (
                pairwise_prompts(rubric, *_SPIDER, "six", "8")[0],
                "Answer B says 8, as the reference does; A says six.\nVERDICT: B",
            ),
            (
                pairwise_prompts(rubric, *_SKY, "It is blue.", "I am not sure.")[0],
                "Answer A says blue, as the reference does; B says nothing.\nVERDICT: A",
            ),
        ]
    if form in ("faithfulness", "relevance"):
        question = "How much is the Orbit lamp?"
        right, wrong = ("It costs 40 euros.", "It comes in red.")
        if form == "relevance":
            wrong = "Our office is in Lyon."
        why = {
            "faithfulness": ("The passage says 40 euros.", "The passage says white, not red."),
            "relevance": ("It gives the price asked for.", "It does not speak of the lamp."),
        }[form]
        return [
            (check_prompt(form, question, right, [_LAMP[4:]]), f"{why[0]}\nVERDICT: yes"),
            (check_prompt(form, question, wrong, [_LAMP[4:]]), f"{why[1]}\nVERDICT: no"),
        ]
    good, bad = ("VERDICT: yes", "VERDICT: no") if form == "binary" else ("SCORE: 5", "SCORE: 1")
    return [
        (
            pointwise_prompt(rubric, form, *_SKY, "It is blue."),
            f"The answer says blue, as the reference does.\n{good}",
        ),
        (
            pointwise_prompt(rubric, form, *_SPIDER, "six"),
            f"The answer says six; the reference says 8.\n{bad}",
        ),
    ]


def messages(text: str, form: str, rubric: str) -> list[dict]:
    """The chat a question is asked in: the system line, the two worked examples of `form`
    (binary, 1-5, pairwise, faithfulness, relevance), then the question."""
    turns = [{"role": "system", "content": SYSTEM}]
    for question, reply in _examples(form, rubric):
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return turns + [{"role": "user", "content": text}]


def pointwise_prompt(rubric: str, scale: str, question: str, reference: str, answer: str) -> str:
    return _POINTWISE.format(
        rubric=rubric, question=question, reference=reference, answer=answer, ask=_ASK[scale]
    )


def pairwise_prompts(rubric: str, question: str, reference: str, mine: str, theirs: str):
    """The two orders: the method's answer as A, then as B."""
    fill = dict(rubric=rubric, question=question, reference=reference)
    return (
        _PAIRWISE.format(first=mine, second=theirs, **fill),
        _PAIRWISE.format(first=theirs, second=mine, **fill),
    )


def check_prompt(check: str, question: str, answer: str, passages: list[str]) -> str:
    if check == "faithfulness":
        shown = "\n\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, 1))
        return _FAITHFULNESS.format(passages=shown, question=question, answer=answer)
    return _RELEVANCE.format(question=question, answer=answer)


def parse(raw: str, form: str) -> str | None:
    """The verdict of a judge's reply: "yes"/"no" (`binary`), "1".."5" (`1-5`) or "A"/"B"/"tie"
    (`pairwise`), from the last line that gives one; None when no line does."""
    for line in reversed(str(raw).splitlines()):
        if form == "1-5":
            match = _SCORE.match(line.strip())
            if match:
                return match.group(1)
            continue
        match = _VERDICT.match(line.strip())
        if match and match.group(1).lower() in _ALLOWED[form]:
            word = match.group(1).lower()
            return word.upper() if word in ("a", "b") else word
    return None


def value(verdict: str | None, form: str) -> float | None:
    """What a pointwise or check verdict is worth, in [0, 1]; None for no verdict."""
    if verdict is None:
        return None
    if form == "1-5":
        return (int(verdict) - 1) / 4
    return 1.0 if verdict == "yes" else 0.0


_FOR_METHOD = ({"A": 1.0, "B": 0.0, "tie": 0.5}, {"A": 0.0, "B": 1.0, "tie": 0.5})


def pairwise_value(verdicts: list) -> float | None:
    """The method's value from its two orders' verdicts (module docstring); None when either
    order gave none."""
    if len(verdicts) != 2 or any(v not in _FOR_METHOD[0] for v in verdicts):
        return None
    first, second = _FOR_METHOD[0][verdicts[0]], _FOR_METHOD[1][verdicts[1]]
    return first if first == second else 0.5


def says_correct(value_: float, form: str) -> bool:
    """Whether a pointwise verdict calls the answer right: yes, or a score of 4 or 5."""
    return value_ >= (0.75 if form == "1-5" else 1.0)
