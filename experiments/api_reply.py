"""What a served model's reply must hold before adaptwise scores, caches or prices it.

A reply is strict JSON (no NaN or Infinity) and, for the request it answers:

- `models`: an object whose `data` lists objects with a string `id`;
- `completions`: one choice per prompt, each with its `text` no longer than the prompt it echoes
  plus what `max_tokens` can hold; with `echo` and `logprobs`, `logprobs` is absent (the server
  gives none: a fallback, not a fault) or holds `token_logprobs` (finite, at most 0; the first
  may be null) and `text_offset` (whole numbers) of the same length;
- `chat.completions`: at least one choice whose `message` holds a string `content` (or null:
  an empty answer), within what `max_tokens` can hold;
- `usage`, where given: token counts that are whole numbers from 0 to `MAX_TOKENS`, the
  generated ones at most what was asked for.

`reply_problem` says what is wrong, or None. A reply with a problem is a failed request: never
scored, never cached; a cached entry with one is a miss (experiments/api_cache.py).
"""

from __future__ import annotations

import json
import math

from experiments.numbers import number_problem

MAX_TOKENS = 10**9  # more tokens than any one request is billed for
MAX_TOKEN_CHARS = 256  # more characters than any vocabulary's longest token
LOGPROB_SLACK = 1e-4  # rounding above 0 that a server's float32 log-probabilities may show


class MalformedReply(ValueError):
    """A reply that is not strict JSON, or holds the wrong things."""


def _no_constant(name: str):
    raise MalformedReply(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a float past the largest
        raise MalformedReply(f"{text[:20]} is not a finite number")
    return value


def parse_reply(data: bytes) -> object:
    """Strict JSON: NaN, Infinity, -Infinity and numbers too large for a float are refused,
    as is text that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedReply("the reply is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except MalformedReply:
        raise
    except ValueError:
        start = text.lstrip()[:1]
        if start == "<":
            raise MalformedReply("the reply is HTML, not JSON") from None
        raise MalformedReply("the reply is not JSON") from None


def reply_problem(endpoint: str, request: dict, reply: object) -> str | None:
    """What is wrong with `reply` as the answer to `request` at `endpoint`; None if nothing."""
    if endpoint == "models":
        return _models_problem(reply)
    if not isinstance(reply, dict):
        return f"the reply is a JSON {_kind(reply)}, not an object"
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        return "the reply holds no choices" if not choices else "choices is not a list"
    if not all(isinstance(c, dict) for c in choices):
        return "a choice is not an object"
    if reply.get("model") is not None and not isinstance(reply.get("model"), str):
        return "model is not a string"
    max_tokens = request.get("max_tokens") or 0
    if endpoint == "completions":
        problem = _completions_problem(request, choices, max_tokens)
    else:
        problem = _chat_problem(choices, max_tokens)
    most = (max_tokens + 1) * len(choices) if max_tokens else None  # +1: a stop token counted
    return problem or _usage_problem(reply.get("usage"), most)


def _models_problem(reply: object) -> str | None:
    data = reply.get("data") if isinstance(reply, dict) else None
    if not isinstance(data, list):
        return "the model list is not an object with a data list"
    if not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        return "a model in the list has no string id"
    return None


def _completions_problem(request: dict, choices: list, max_tokens: int) -> str | None:
    prompts = request.get("prompt")
    prompts = prompts if isinstance(prompts, list) else [prompts]
    indices = [c.get("index", i) for i, c in enumerate(choices)]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        return "a choice's index is not a whole number"
    if len(choices) != len(prompts) or sorted(indices) != list(range(len(prompts))):
        return f"{len(choices)} choices for {len(prompts)} prompts"
    for index, choice in zip(indices, choices):
        text = choice.get("text")
        if not isinstance(text, str):
            return f"choice {index} has no text"
        room = max_tokens * MAX_TOKEN_CHARS + (len(prompts[index]) if request.get("echo") else 0)
        if len(text) > room:
            return f"choice {index} holds {len(text):,} characters, more than max_tokens allows"
        if request.get("echo") and request.get("logprobs") is not None:
            problem = _logprobs_problem(choice.get("logprobs"))
            if problem:
                return f"choice {index}: {problem}"
    return None


def _logprobs_problem(logprobs: object) -> str | None:
    if logprobs is None:
        return None  # no logprobs given: the caller falls back to constrained generation
    if not isinstance(logprobs, dict):
        return "logprobs is not an object"
    values, offsets = logprobs.get("token_logprobs"), logprobs.get("text_offset")
    if values is None and offsets is None:
        return None
    if not isinstance(values, list) or not isinstance(offsets, list):
        return "token_logprobs and text_offset are not lists"
    tokens = logprobs.get("tokens")
    if len(values) != len(offsets) or (isinstance(tokens, list) and len(tokens) != len(values)):
        return "token_logprobs, text_offset and tokens differ in length"
    for i, value in enumerate(values):
        if value is None and i == 0:
            continue  # the first token has no context to be predicted from
        problem = number_problem(value, low=None, high=LOGPROB_SLACK)
        if problem:
            return f"token logprob {i} {problem}"
    for offset in offsets:
        problem = number_problem(offset, integer=True)
        if problem:
            return f"a text offset {problem}"
    return None


def _chat_problem(choices: list, max_tokens: int) -> str | None:
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return "the first choice has no message"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return "the message content is not text"
    if max_tokens and len(content or "") > max_tokens * MAX_TOKEN_CHARS:
        return f"the answer holds {len(content):,} characters, more than max_tokens allows"
    return None


def _usage_problem(usage: object, most_generated: int | None) -> str | None:
    if usage is None:
        return None  # not reported: tokens and cost are unknown, and said so
    if not isinstance(usage, dict):
        return "usage is not an object"
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if usage.get(key) is None:
            continue
        problem = number_problem(usage[key], high=MAX_TOKENS, integer=True)
        if problem:
            return f"usage {key} {problem}"
    if most_generated is not None and (usage.get("completion_tokens") or 0) > most_generated:
        return f"usage completion_tokens is {usage['completion_tokens']:,}, more than was asked for"
    return None


def _kind(value: object) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def first_token_logprobs(reply: dict) -> dict[str, float]:
    """{token text: log-prob} of the first generated token's alternatives, from OpenAI's chat
    format (`logprobs.content[0].top_logprobs`, as llama.cpp's server also answers completions)
    or the legacy completions format (`logprobs.top_logprobs[0]`). Entries that are not a
    string and a finite log-prob at most 0 are left out; {} when there are none."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    logprobs = choices[0].get("logprobs") if choices and isinstance(choices[0], dict) else None
    pairs: list = []
    if isinstance(logprobs, dict):
        content = logprobs.get("content")
        legacy = logprobs.get("top_logprobs")
        if isinstance(content, list) and content and isinstance(content[0], dict):
            top = content[0].get("top_logprobs")
            if isinstance(top, list):
                pairs = [(t.get("token"), t.get("logprob")) for t in top if isinstance(t, dict)]
        elif isinstance(legacy, list) and legacy and isinstance(legacy[0], dict):
            pairs = list(legacy[0].items())
    out: dict[str, float] = {}
    for token, value in pairs:
        if isinstance(token, str) and number_problem(value, low=None, high=LOGPROB_SLACK) is None:
            out[token] = max(out.get(token, -math.inf), min(float(value), 0.0))
    return out
