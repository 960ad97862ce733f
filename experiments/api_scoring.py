"""Scoring through a served model: how `ApiLanguageModel` (experiments/api_language_model.py)
answers the model interface's `score_labels` and `generate_answers` for `--model openai:NAME`.

- Classification: experiments/api_labels.py, by the best means the server offers (prompt
  log-likelihood, a constrained choice, first-token log-probs, exact match).
- QA and generation: greedy (temperature 0) completions of the rendered prompt, or chat
  completions of the messages when there is no template.

Token counts are the server's `usage` (what it bills); latency is each request's, measured
when it was made (a cached answer keeps its original latency).
"""

from __future__ import annotations

import numpy as np

from experiments.api_model import ApiResponse
from experiments.prediction import Prediction

GENERATION = "greedy generation"


def map_to_label(answer: str, labels: list[str]) -> str | None:
    """The label `answer` names: exactly, else ignoring case and whitespace; else None."""
    text = answer.strip()
    if text in labels:
        return text
    folded = " ".join(text.split()).casefold()
    for label in labels:
        if " ".join(label.split()).casefold() == folded:
            return label
    return None


def generate_answers_api(ctx, rows, prompts, progress) -> list[Prediction]:
    short = ctx.task.kind == "qa"
    answers = generate_all(ctx, prompts, progress, ctx.max_new_tokens, short)
    return [
        served_prediction(
            row, prompt, text, response, {"scoring": GENERATION, "api": request_record(response)}
        )
        for row, prompt, (text, response) in zip(rows, prompts, answers)
    ]


def generate_all(ctx, prompts, progress, max_tokens: int, short: bool):
    """(answer, response) per prompt: greedy, stopped at the end of the turn (and, for short
    answers, at the first newline), as experiments/generation.py does in-process."""
    lm = ctx.lm
    newline = ["\n", "\n\n"] if short else []
    if lm.renders_prompts:
        end = ctx.prompt_format.answer_end
        stops = list(dict.fromkeys([end, *newline] if end else newline))
        endpoint = "completions"
        bodies = [
            {"prompt": p.text, "max_tokens": max_tokens, "temperature": 0, "stop": stops or None}
            for p in prompts
        ]
    else:
        endpoint = "chat.completions"
        bodies = [
            {
                "messages": list(p.messages),
                "max_tokens": max_tokens,
                "temperature": 0,
                **({"stop": newline[:1]} if short else {}),
            }
            for p in prompts
        ]
    responses = lm.model.map(endpoint, bodies, progress)
    answers = [(answer_text(r, endpoint), r) for r in responses]
    empty = sum(not text for text, _ in answers)
    if empty:  # a valid reply with no text: counted wrong, and said (api.empty_answers)
        ctx.log(f"warning: {empty} of {len(answers)} answers from {lm.name} are empty")
    return answers


def answer_text(response: ApiResponse, endpoint: str) -> str:
    choices = response.body.get("choices") or [{}]
    if endpoint == "completions":
        return (choices[0].get("text") or "").strip()
    return ((choices[0].get("message") or {}).get("content") or "").strip()


def _usage(response: ApiResponse) -> tuple[int, int, bool]:
    usage = response.body.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    reported = isinstance(prompt, int)
    return (prompt or 0), (completion or 0), reported


def request_record(response: ApiResponse) -> dict:
    prompt, completion, reported = _usage(response)
    return {
        "latency_s": round(response.latency_s, 4),
        "cached": response.cached,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "usage_reported": reported,
    }


def served_prediction(row, prompt, output: str, response: ApiResponse, extra: dict) -> Prediction:
    prompt_tokens, completion_tokens, _ = _usage(response)
    return Prediction(
        row.id, prompt.text, output, row.output, prompt_tokens, completion_tokens, extra
    )


def api_summary(predictions: list[Prediction]) -> dict:
    """Fields of a method's results.json entry: scoring, requests, tokens from `usage`, and
    latency per request (p50/p95). Empty for an in-process method."""
    records = [p.extra["api"] for p in predictions if isinstance(p.extra.get("api"), dict)]
    if not records:
        return {}
    latencies = [r["latency_s"] for r in records]
    p50, p95 = (float(x) for x in np.percentile(latencies, (50, 95)))
    scorings = sorted({p.extra.get("scoring") for p in predictions if p.extra.get("scoring")})
    return {
        "scoring": ", ".join(scorings),
        "api": {
            "requests": len(records),
            "cached": sum(r["cached"] for r in records),
            "prompt_tokens": sum(r["prompt_tokens"] for r in records),
            "completion_tokens": sum(r["completion_tokens"] for r in records),
            "usage_reported": all(r["usage_reported"] for r in records),
            "unmapped_answers": sum(bool(p.extra.get("unmapped")) for p in predictions),
            "empty_answers": sum(p.extra.get("answer", p.output) == "" for p in predictions),
        },
        "latency": {"p50_s": round(p50, 4), "p95_s": round(p95, 4), "per": "request"},
        "precision": "served",
    }
