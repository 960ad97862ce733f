"""The model interface the methods score through, whichever model the run names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from experiments.prediction import Prediction
    from experiments.prompts import Prompt
    from experiments.task import Row


@runtime_checkable
class ScoringModel(Protocol):
    """A run's model as the methods see it: two questions, each answered with one
    `Prediction` per row, in order, as lm-eval's `LM` class answers `loglikelihood` and
    `generate_until` whether the model is in-process (HFLM) or served (its OpenAI clients).

    `RunContext.lm` holds one, chosen once from `--model` (experiments/context.py):

    - the in-process `LanguageModel` (experiments/models.py; the algorithms are in
      experiments/local_scoring.py): labels ranked by log-likelihood with shared prefix passes
      and optional calibration, answers by batched greedy generation;
    - the served `ApiLanguageModel` (experiments/api_language_model.py): labels by the best
      means the server offers (experiments/api_labels.py), answers by greedy completions
      (experiments/api_scoring.py).

    `experiments.methods.score_labels` / `generate_answers` call it for every method, after the
    rows too long for the model's context are set aside; no method asks which model it is.
    `ctx` is the run's context (the task, the prompt format, the options); `content_free` holds
    each row's content-free prompts for calibration (empty lists when it is off; a served model
    refuses calibration before the run starts, experiments/api_model.py's `check_methods`).
    """

    name: str

    def score_labels(
        self,
        ctx,
        rows: list[Row],
        prompts: list[Prompt],
        content_free: list[list[Prompt]],
        progress: Callable[[int], None],
    ) -> list[Prediction]:
        """Each row's label (classification), the prediction's `output`."""
        ...

    def generate_answers(
        self, ctx, rows: list[Row], prompts: list[Prompt], progress: Callable[[int], None]
    ) -> list[Prediction]:
        """Each row's greedy answer (QA and generation); QA answers stop at the first newline."""
        ...
