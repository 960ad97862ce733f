"""Scoring through a served model: what `score_labels` and `generate_answers` do for
`--model openai:NAME` (experiments/api_model.py).

- Classification: label log-likelihoods when the prompt text is known (a chat template from
  --tokenizer or the server) and the server gives prompt logprobs: one completions request
  per row with `echo` + `logprobs`, every label appended to the same prompt (lm-eval's
  `local-completions` does the same; max_tokens 1, since some servers refuse 0). The label's
  score sums the logprobs of the tokens from the prompt's end to the label's end, so it equals
  the in-process score on the same prompt. Otherwise constrained generation: the label list is
  in the prompt already (experiments/prompts.py system_text), the greedy answer is mapped to a
  label by exact, then case- and whitespace-insensitive match; an answer that maps to no label
  counts as wrong and is kept as it is, with `unmapped: true`, in predictions.jsonl.
- QA and generation: greedy (temperature 0) completions of the rendered prompt, or chat
  completions of the messages when there is no template.

Token counts are the server's `usage` (what it bills); latency is each request's, measured
when it was made (a cached answer keeps its original latency).
"""

from __future__ import annotations

import numpy as np

from experiments.api_model import ApiRequestFailed, ApiResponse
from experiments.prediction import Prediction

LOGLIKELIHOOD = "label log-likelihood (server prompt logprobs)"
CONSTRAINED = "constrained generation (answer mapped to a label)"
GENERATION = "greedy generation"


class NoLogprobs(Exception):
    """The server gives no prompt logprobs (refused with a 400, or left them out)."""


def score_labels_api(ctx, rows, prompts, progress) -> list[Prediction]:
    lm = ctx.lm
    if lm.renders_prompts and getattr(lm.model, "logprobs", True):
        try:
            return _label_loglikelihoods(ctx, rows, prompts, progress)
        except NoLogprobs as why:
            lm.model.logprobs = False  # asked once per run, not once per method
            ctx.log(
                f"{lm.name}: the server gives no prompt logprobs ({why}); labels are scored by "
                "constrained generation instead (results.json: scoring)"
            )
    return _constrained_labels(ctx, rows, prompts, progress)


def _label_loglikelihoods(ctx, rows, prompts, progress) -> list[Prediction]:
    labels, end, client = ctx.task.labels, ctx.prompt_format.answer_end, ctx.lm.model
    bodies = [
        {
            "prompt": [p.text + label + end for label in labels],
            "echo": True,
            "logprobs": 1,
            "max_tokens": 1,
            "temperature": 0,
        }
        for p in prompts
    ]
    if not bodies:
        return []
    try:  # the first row alone: does this server give prompt logprobs at all?
        first = client.request("completions", bodies[0])
    except ApiRequestFailed as exc:
        if exc.status in (400, 422, 501):
            raise NoLogprobs(f"HTTP {exc.status}") from None
        raise
    _label_scores(first, len(prompts[0].text), [len(x + end) for x in labels])
    progress(1)
    responses = [first, *client.map("completions", bodies[1:], progress)]
    out, misaligned = [], 0
    for row, prompt, response in zip(rows, prompts, responses):
        scores, aligned = _label_scores(response, len(prompt.text), [len(x + end) for x in labels])
        misaligned += not aligned
        raw = labels[int(np.argmax(scores))]
        extra = {
            "output_raw": raw,
            "label_logprobs": [round(float(x), 4) for x in scores],
            "scoring": LOGLIKELIHOOD,
            "api": _request_record(response),
        }
        out.append(_prediction(row, prompt, raw, response, extra))
    if misaligned:
        ctx.log(
            f"warning: {misaligned} of {len(rows)} rows: the server's tokens straddle the "
            "prompt's end, so their label scores include a part of the prompt's last token"
        )
    return out


def _label_scores(response: ApiResponse, start: int, lengths: list[int]):
    """Summed logprobs of each label's tokens and whether every label starts on a token."""
    choices = sorted(response.body.get("choices") or [], key=lambda c: c.get("index") or 0)
    if len(choices) != len(lengths):
        raise NoLogprobs(f"{len(choices)} choices for {len(lengths)} labels")
    scores, aligned = [], True
    for choice, length in zip(choices, lengths):
        lp = choice.get("logprobs") or {}
        offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
        if not offsets or not values or len(offsets) != len(values):
            raise NoLogprobs("no token_logprobs in the echoed prompt")
        picked = [v for o, v in zip(offsets, values) if start <= o < start + length]
        if not picked or any(v is None for v in picked):
            raise NoLogprobs("no logprobs for the label's tokens")
        aligned = aligned and start in offsets
        scores.append(float(sum(picked)))
    return scores, aligned


def _constrained_labels(ctx, rows, prompts, progress) -> list[Prediction]:
    labels = ctx.task.labels
    longest = max(len(label) for label in labels)
    answers = _generate(ctx, prompts, progress, max_tokens=max(8, longest // 2 + 4), short=True)
    out = []
    for row, prompt, (text, response) in zip(rows, prompts, answers):
        label = map_to_label(text, labels)
        extra = {"answer": text, "scoring": CONSTRAINED, "api": _request_record(response)}
        if label is None:
            extra["unmapped"] = True
        out.append(_prediction(row, prompt, label if label is not None else text, response, extra))
    return out


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
    answers = _generate(ctx, prompts, progress, ctx.max_new_tokens, short)
    return [
        _prediction(
            row, prompt, text, response, {"scoring": GENERATION, "api": _request_record(response)}
        )
        for row, prompt, (text, response) in zip(rows, prompts, answers)
    ]


def _generate(ctx, prompts, progress, max_tokens: int, short: bool):
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
    answers = [(_answer_text(r, endpoint), r) for r in responses]
    empty = sum(not text for text, _ in answers)
    if empty:  # a valid reply with no text: counted wrong, and said (api.empty_answers)
        ctx.log(f"warning: {empty} of {len(answers)} answers from {lm.name} are empty")
    return answers


def _answer_text(response: ApiResponse, endpoint: str) -> str:
    choices = response.body.get("choices") or [{}]
    if endpoint == "completions":
        return (choices[0].get("text") or "").strip()
    return ((choices[0].get("message") or {}).get("content") or "").strip()


def _usage(response: ApiResponse) -> tuple[int, int, bool]:
    usage = response.body.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    reported = isinstance(prompt, int)
    return (prompt or 0), (completion or 0), reported


def _request_record(response: ApiResponse) -> dict:
    prompt, completion, reported = _usage(response)
    return {
        "latency_s": round(response.latency_s, 4),
        "cached": response.cached,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "usage_reported": reported,
    }


def _prediction(row, prompt, output: str, response: ApiResponse, extra: dict) -> Prediction:
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
