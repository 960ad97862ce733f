"""One eval row's prediction, as every method returns it and predictions.jsonl records it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Prediction:
    id: str
    prompt: str
    output: str
    gold: str
    prompt_tokens: int
    generated_tokens: int
    extra: dict = field(default_factory=dict)
