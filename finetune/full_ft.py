"""`full-ft`: every weight fine-tuned, on a copy of the model of its own (the trainer loads it),
the shared base freed meanwhile when both do not fit (finetune/fitting.py); the next method
that needs the base loads it again. Preparing, training and predicting are what every
fine-tuning method does (finetune/methods.py)."""

from __future__ import annotations

from experiments.context import RunContext
from finetune.methods import FinetuneMethod


class FullFinetuneMethod(FinetuneMethod):
    description = "zero-shot prompt; every weight fine-tuned on the train split"

    def starting_model(self, ctx: RunContext, checkpoint: str):
        """None: the trainer loads the copy whose every weight it trains."""
        return None
