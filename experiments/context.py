"""What every method of one run shares: the task, the options, and lazily loaded models."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from experiments.task import Task


@dataclass
class RunOptions:
    """Options of one run; every field has the default the CLI shows."""

    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct
    embedder: str | None = None  # None: the embedded all-MiniLM-L6-v2
    seed: int = 0
    k: int = 4  # few-shot examples per query
    calibrate: bool = False  # contextual calibration; off: it lost on 2 of 3 methods measured
    batch_size: int = 16  # generation batch
    max_new_tokens: int | None = None  # None: 20 for qa, 128 for generation
    limit: int | None = None  # score only the first N eval rows (None or 0: all)
    trust_remote_code: bool = False
    extra: dict = field(default_factory=dict)  # method-specific options (rag, finetune, ...)


class RunContext:
    def __init__(self, task: Task, options: RunOptions, log=print):
        self.task = task
        self.options = options
        self.log = log
        self.out_dir = None  # the run's output folder, set by the runner

    @property
    def seed(self) -> int:
        return self.options.seed

    @property
    def calibrate(self) -> bool:
        return self.options.calibrate

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def max_new_tokens(self) -> int:
        if self.options.max_new_tokens:
            return self.options.max_new_tokens
        return 20 if self.task.kind == "qa" else 128

    @cached_property
    def lm(self):
        from experiments.models import load_language_model

        return load_language_model(
            self.options.model, self.options.trust_remote_code, progress=self.log
        )

    @property
    def model(self):
        return self.lm.model

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @cached_property
    def embedder(self):
        from experiments.embeddings import Embedder

        return Embedder(self.options.embedder)

    @cached_property
    def prompt_format(self):
        from experiments.prompts import PromptFormat, system_text

        return PromptFormat(self.tokenizer, system_text(self.task))

    @cached_property
    def scorer(self):
        from experiments.lm_scoring import ContinuationScorer

        pad = self.tokenizer.pad_token_id
        return ContinuationScorer(self.model, pad if pad is not None else 0)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
