"""What every method of one run shares: the task, the options, and lazily loaded models."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from experiments.progress_events import log_events
from experiments.task import Task


@dataclass
class RunOptions:
    """Options of one run; every field has the default the CLI shows."""

    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct
    embedder: str | None = None  # None: the embedded all-MiniLM-L6-v2
    seed: int = 0
    # Trainings of each fine-tuning method, seeds seed, seed+1, ... (None: the task file's
    # `finetune: seeds:`, else 1); not matched between runs: more seeds add to those recorded.
    seeds: int | None = None
    k: int = 4  # few-shot examples per query
    calibrate: bool = False  # contextual calibration; off: it lost on 2 of 3 methods measured
    batch_size: int = 16  # generation batch
    max_new_tokens: int | None = None  # None: 20 for qa, 128 for generation
    limit: int | None = None  # score only the first N eval rows (None or 0: all)
    trust_remote_code: bool = False
    precision: str | None = None  # auto | bf16 | fp16 | fp32; None: the task file's, else auto
    # A served model (--model openai:NAME; experiments/api_model.py). Never the API key.
    base_url: str | None = None  # None: OPENAI_BASE_URL, else OpenAI's
    tokenizer: str | None = None  # whose chat template renders prompts; None: the server's
    concurrency: int = 8  # requests in flight at once
    api_cache: bool = True  # --no-cache: ask the server again
    prices: dict = field(default_factory=dict)  # --prompt-token-price etc. (costs keys)
    devices: int = 1  # processes the run shares (--devices, torchrun; experiments/distributed.py)
    extra: dict = field(default_factory=dict)  # method-specific options (rag, finetune, ...)


class RunContext:
    def __init__(self, task: Task, options: RunOptions, log=print, emit=None):
        self.task = task
        self.options = options
        self.log = log
        # Typed progress events (experiments/progress_events.py); without a sink, their lines
        # go to the log.
        self.emit = emit or log_events(log)
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
        return self.options.max_new_tokens or default_max_new_tokens(self.task.kind)

    @cached_property
    def precision(self) -> str:
        """bf16, fp16 or fp32: the run's --precision, else the task file's, else auto."""
        from experiments.precision import resolve_precision

        return resolve_precision(self.options.precision or self.task.precision or "auto")

    @cached_property
    def lm(self):
        """The run's model, the one place a served model and an in-process one are told apart:
        either answers the model interface (experiments/scoring_model.py) that methods score
        through."""
        from experiments.api_model import is_api_model

        if is_api_model(self.options.model):
            from experiments.api_language_model import load_api_model

            return load_api_model(self.options, self.log)  # the same seam, no local weights
        from experiments.models import load_language_model

        return load_language_model(
            self.options.model,
            self.options.trust_remote_code,
            progress=self.log,
            precision=self.precision,
        )

    @property
    def model(self):
        if self.lm.model is None:  # released while a method trained its own copy
            from experiments.models import load_weights

            self.log(f"reloading {self.lm.name} for the next method")
            self.lm.model = load_weights(self.lm, self.options.trust_remote_code, self.precision)
        return self.lm.model

    def release_model(self) -> float:
        """Free the shared model's weights (a method needs the memory); the next use of
        `model` loads them again. Returns the bytes freed."""
        if "lm" not in self.__dict__ or self.lm.model is None:
            return 0.0
        from experiments.models import free_memory, model_bytes

        freed = model_bytes(self.lm.model)
        self.lm.model = None
        self.__dict__.pop("scorer", None)
        free_memory()
        return freed

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @cached_property
    def embedder(self):
        from experiments.embeddings import Embedder

        return Embedder(self.options.embedder)

    @cached_property
    def questions(self):
        """The embedder for train and eval questions: each one encoded once per run."""
        from experiments.embeddings import QuestionEncoder

        return QuestionEncoder(self.embedder)

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


def default_max_new_tokens(kind: str) -> int:
    """How many tokens an answer may take when --max-new-tokens is not given."""
    return 20 if kind == "qa" else 128
