"""Classification through a served model: each row's label, by the best means the server offers.

In order, the first that the server answers on the first row is used for every row of the run
(`ApiClient.label_path` remembers it, so each method of a run asks the same way):

1. `loglikelihood`: prompt log-likelihood, one completions request per row with `echo` and
   `logprobs`, every label appended to the same prompt; the label's score sums the log-probs of
   its tokens, so it equals the in-process score (vLLM, OpenAI's legacy completions, the tests'
   server; llama.cpp's server ignores `echo`). Needs the prompt text (a chat template).
2. `grammar`: llama.cpp's GBNF grammar `root ::= "label1" | "label2" | ...` on the rendered
   prompt: greedy decoding that can only spell a label.
3. `guided_choice`: vLLM's guided decoding over the labels, on the rendered prompt.
4. `json_schema`: structured outputs on the chat endpoint, `{"label": one of the labels}`
   (OpenAI, vLLM, llama.cpp and most hosted APIs).
5. `first_token`: the first generated token's `top_logprobs`; a label scores the best log-prob
   of a listed token that starts it (labels that share that token are told apart by nothing
   more: said in docs/served-models.md).
6. `exact`: free greedy generation mapped to a label exactly, then ignoring case and spaces; an
   answer that names no label is wrong and kept with `unmapped: true`.

A path is unsupported when the server refuses it (HTTP 400, 404, 422 or 501) or when its answer
for the first row is not what the path asks for (a server that ignores an unknown field answers
freely). results.json's `scoring` names the path of every row.
"""

from __future__ import annotations

import json

import numpy as np

from experiments.api_model import ApiRequestFailed, ApiResponse
from experiments.api_reply import first_token_logprobs
from experiments.api_scoring import (
    answer_text,
    generate_all,
    map_to_label,
    request_record,
    served_prediction,
)

LOGLIKELIHOOD = "label log-likelihood (server prompt logprobs)"
GRAMMAR = "constrained choice (llama.cpp grammar over the labels)"
GUIDED = "constrained choice (vLLM guided_choice over the labels)"
JSON_SCHEMA = "constrained choice (structured output: one of the labels)"
FIRST_TOKEN = "first-token log-probabilities (top_logprobs)"
EXACT = "free generation mapped to a label (exact match)"
PATHS = ("loglikelihood", "grammar", "guided_choice", "json_schema", "first_token", "exact")
NAMES = dict(zip(PATHS, (LOGLIKELIHOOD, GRAMMAR, GUIDED, JSON_SCHEMA, FIRST_TOKEN, EXACT)))
REFUSED = (400, 404, 422, 501)
TOP_LOGPROBS = 20  # OpenAI's most


class NoLogprobs(Exception):
    """The server gives no prompt logprobs (refused with a 400, or left them out)."""


def label_scores(response: ApiResponse, start: int, lengths: list[int]):
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


class Unsupported(Exception):
    """The server does not offer this path (refused it, or ignored it)."""


def score_labels_api(ctx, rows, prompts, progress) -> list:
    """One prediction per row, by the first path this server offers (module docstring)."""
    client = ctx.lm.model
    tried = getattr(client, "refused_paths", None)
    if tried is None:
        tried = client.refused_paths = set()
    for path in PATHS:
        if path in tried or not _possible(path, ctx):
            continue
        try:
            out = _score(path, ctx, rows, prompts, progress)
        except Unsupported as why:
            tried.add(path)
            ctx.log(
                f"{ctx.lm.name}: the server does not offer {NAMES[path]} ({why}); trying the "
                "next way to score labels (results.json: scoring)"
            )
            continue
        client.label_path = path
        return out
    raise AssertionError("exact match is always possible")  # pragma: no cover


def _possible(path: str, ctx) -> bool:
    renders = ctx.lm.renders_prompts
    if path in ("loglikelihood", "grammar", "guided_choice"):
        return renders
    return True


def _score(path, ctx, rows, prompts, progress):
    if path == "exact":
        return _exact(ctx, rows, prompts, progress)
    endpoint, bodies = _requests(path, ctx, prompts)
    if not bodies:
        return []
    client = ctx.lm.model
    if getattr(client, "label_path", None) == path:
        first = None  # this run asked this way already: no probe
    else:
        try:  # the first row alone: does this server offer the path?
            first = client.request(endpoint, bodies[0])
        except ApiRequestFailed as exc:
            if exc.status in REFUSED:
                raise Unsupported(f"HTTP {exc.status}") from None
            raise
        if not _offered(path, ctx, prompts[0], first):
            raise Unsupported(
                "no log-probs in its answer"
                if path in ("loglikelihood", "first_token")
                else "its first answer is not one of the labels"
            )
        progress(1)
    rest = bodies if first is None else bodies[1:]
    responses = ([] if first is None else [first]) + client.map(endpoint, rest, progress)
    out = []
    for row, prompt, response in zip(rows, prompts, responses):
        label, extra = _read(path, ctx, prompt, response)
        extra = {**extra, "scoring": NAMES[path], "api": request_record(response)}
        if label is None:
            extra.update(unmapped=True, answer=answer_text(response, endpoint))
        output = label if label is not None else extra["answer"]
        extra.setdefault("output_raw", output)
        out.append(served_prediction(row, prompt, output, response, extra))
    return out


def _requests(path: str, ctx, prompts) -> tuple[str, list[dict]]:
    labels, end = ctx.task.labels, ctx.prompt_format.answer_end
    longest = max(len(label) for label in labels)
    greedy = {"temperature": 0, "max_tokens": longest + 8}
    if path == "loglikelihood":
        return "completions", [
            {
                "prompt": [p.text + label + end for label in labels],
                "echo": True,
                "logprobs": 1,
                "max_tokens": 1,
                "temperature": 0,
            }
            for p in prompts
        ]
    if path == "grammar":
        grammar = "root ::= " + " | ".join(json.dumps(label) for label in labels)
        return "completions", [{"prompt": p.text, **greedy, "grammar": grammar} for p in prompts]
    if path == "guided_choice":
        return "completions", [
            {"prompt": p.text, **greedy, "guided_choice": list(labels)} for p in prompts
        ]
    if path == "json_schema":
        schema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(labels)}},
            "required": ["label"],
            "additionalProperties": False,
        }
        format_ = {"type": "json_schema", "json_schema": {"name": "label", "schema": schema}}
        format_["json_schema"]["strict"] = True
        return "chat.completions", [
            {
                "messages": list(p.messages),
                "temperature": 0,
                "max_tokens": longest + 16,
                "response_format": format_,
            }
            for p in prompts
        ]
    if path == "first_token":
        if ctx.lm.renders_prompts:
            return "completions", [
                {"prompt": p.text, "max_tokens": 1, "temperature": 0, "logprobs": TOP_LOGPROBS}
                for p in prompts
            ]
        return "chat.completions", [
            {
                "messages": list(p.messages),
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
            }
            for p in prompts
        ]
    raise ValueError(path)


def _offered(path: str, ctx, prompt, response) -> bool:
    """Whether a reply shows the server did what the path asked: log-probs where they were
    asked for, a label where a constrained choice was."""
    if path == "first_token":
        return bool(first_token_logprobs(response.body))
    return _read(path, ctx, prompt, response)[0] is not None


def _read(path: str, ctx, prompt, response) -> tuple[str | None, dict]:
    """(label, fields for predictions.jsonl) from a reply; the label is None when the reply
    names none."""
    labels, end = ctx.task.labels, ctx.prompt_format.answer_end
    if path == "loglikelihood":
        try:
            scores, _aligned = label_scores(
                response, len(prompt.text), [len(x + end) for x in labels]
            )
        except NoLogprobs:
            return None, {}
        label = labels[int(np.argmax(scores))]
        return label, {"label_logprobs": [round(float(x), 4) for x in scores]}
    if path in ("grammar", "guided_choice"):
        text = answer_text(response, "completions")
        return (text if text in labels else None), {}
    if path == "json_schema":
        text = answer_text(response, "chat.completions")
        try:
            label = json.loads(text).get("label")
        except (ValueError, AttributeError):
            return None, {}
        return (label if label in labels else None), {}
    if path == "first_token":
        top = first_token_logprobs(response.body)
        shown = {"first_token_logprobs": {k: round(v, 4) for k, v in top.items()}}
        scores = [_first_token_score(label, top) for label in labels]
        if all(s is None for s in scores):
            return None, shown  # no listed token starts a label
        known = [s if s is not None else -np.inf for s in scores]
        return labels[int(np.argmax(known))], shown
    raise ValueError(path)


def _first_token_score(label: str, top: dict[str, float]) -> float | None:
    """The best log-prob of a listed token that starts `label` (leading spaces ignored)."""
    best = None
    for token, logprob in top.items():
        piece = token.lstrip().replace("Ġ", "").replace("▁", "")
        if piece and label.startswith(piece) and (best is None or logprob > best):
            best = logprob
    return best


def _exact(ctx, rows, prompts, progress) -> list:
    labels = ctx.task.labels
    longest = max(len(label) for label in labels)
    answers = generate_all(ctx, prompts, progress, max_tokens=max(8, longest // 2 + 4), short=True)
    out = []
    for row, prompt, (text, response) in zip(rows, prompts, answers):
        label = map_to_label(text, labels)
        extra = {"answer": text, "scoring": EXACT, "api": request_record(response)}
        if label is None:
            extra["unmapped"] = True
        output = label if label is not None else text
        out.append(served_prediction(row, prompt, output, response, extra))
    return out
