"""`lora`: a LoRA adapter trained on the run's own base model and scored through it. One copy of
the base: the adapter goes onto the shared model before training and comes off after scoring
(`release`), so the next method sees the base exactly as before. Preparing, training and
predicting are what every fine-tuning method does (finetune/methods.py)."""

from __future__ import annotations

from experiments.context import RunContext
from finetune.methods import FinetuneMethod


class LoraMethod(FinetuneMethod):
    description = "zero-shot prompt; LoRA adapter trained on the train split"

    def starting_model(self, ctx: RunContext, checkpoint: str):
        """A fresh adapter on the run's shared base."""
        return self.adapter_on_shared_base(ctx)
