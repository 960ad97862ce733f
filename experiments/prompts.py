"""Render prompts with the model's chat template (Alpaca style for models without one).

A prompt is split in two: `prefix`, everything before the query's words (system text and the
few-shot examples), and `middle`, the query and the opening of the answer turn. Label scoring
runs the prefix once and reuses its keys/values for the query and for content-free inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.task import Row, Task

_SENTINEL = "\u2063ADAPTWISE_QUERY\u2063"
CONTENT_FREE_INPUTS = ("N/A", "")  # Zhao et al. 2021, "Calibrate Before Use"


@dataclass(frozen=True)
class Prompt:
    prefix: str
    middle: str
    messages: tuple = ()  # the same prompt as chat messages (what a chat endpoint is sent)

    @property
    def text(self) -> str:
        return self.prefix + self.middle


def system_text(task: Task) -> str:
    """The instruction every method of a task shares."""
    instruction = task.instruction
    if task.kind == "classification":
        instruction = instruction or "Classify the input."
        return f"{instruction} Answer with exactly one of: {', '.join(task.labels)}."
    if task.kind == "qa":
        return instruction or "Answer the question with a short answer."
    return instruction or "Follow the instruction."


class PromptFormat:
    """Builds prompts for one tokenizer: chat template when it has one, else Alpaca."""

    def __init__(self, tokenizer, system: str):
        self.tokenizer = tokenizer
        self.system = system
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.answer_end = self._answer_end()

    def build(self, examples: list[Row], query: tuple[dict, ...], context: str = "") -> Prompt:
        """Prompt for `query` after `examples` (shown in the given order).

        `context` (e.g. retrieved passages) is placed before the query's words, inside the
        query's turn, so that the shared prefix stays reusable across queries.
        """
        if context:
            first, *rest = query
            query = ({"role": first["role"], "content": f"{context}\n\n{first['content']}"}, *rest)
        history = self._history(examples)
        messages = tuple(history + list(query))
        if not self.chat:
            alpaca = self._alpaca(examples, query)
            return Prompt(alpaca.prefix, alpaca.middle, messages)
        full = self._render(list(messages), generation_prompt=True)
        opener = self._render(history + [{"role": query[0]["role"], "content": _SENTINEL}], False)
        prefix = opener.split(_SENTINEL, 1)[0]
        if not full.startswith(prefix):  # a template that is not a concatenation of turns
            return Prompt("", full, messages)
        return Prompt(prefix, full[len(prefix) :], messages)

    def content_free(self, examples: list[Row]) -> list[Prompt]:
        """The same prompt with the query replaced by each content-free input."""
        return [
            self.build(examples, ({"role": "user", "content": x},)) for x in CONTENT_FREE_INPUTS
        ]

    def _history(self, examples: list[Row]) -> list[dict]:
        history = [{"role": "system", "content": self.system}] if self.system else []
        for ex in examples:
            history.extend(ex.messages)
            history.append({"role": "assistant", "content": ex.output})
        return history

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )

    def _alpaca(self, examples: list[Row], query: tuple[dict, ...]) -> Prompt:
        parts = [f"{self.system}\n\n"] if self.system else []
        for ex in examples:
            parts.append(f"### Input:\n{ex.text}\n\n### Response:\n{ex.output}\n\n")
        parts.append("### Input:\n")
        text = "\n".join(m["content"] for m in query if m["role"] == "user")
        return Prompt("".join(parts), f"{text}\n\n### Response:\n")

    def _answer_end(self) -> str:
        """The text a model emits to close an answer (scored after each label)."""
        if not self.chat:
            return self.tokenizer.eos_token or ""
        turn = self._render(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}], False
        )
        tail = turn.split(_SENTINEL, 1)[1]
        return tail.strip() or (self.tokenizer.eos_token or "")
