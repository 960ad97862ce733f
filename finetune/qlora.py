"""`qlora`: a LoRA adapter trained on a 4-bit NF4 copy of the base (finetune/nf4_base.py), the
shared base freed meanwhile when both do not fit (finetune/fitting.py). Where 4-bit kernels are
missing it fails in one line, or trains plain LoRA with `allow_fallback: true`. Preparing,
training and predicting are what every fine-tuning method does (finetune/methods.py)."""

from __future__ import annotations

from experiments.context import RunContext
from experiments.errors import SetupError
from finetune.methods import FinetuneMethod


class QloraMethod(FinetuneMethod):
    description = "zero-shot prompt; LoRA adapter trained on a 4-bit NF4 base"

    def starting_model(self, ctx: RunContext, checkpoint: str):
        """The 4-bit base; None (the trainer's own full-precision copy: plain LoRA) where 4-bit
        training is not supported and the settings allow falling back."""
        from finetune.nf4_base import load_4bit_model, probe_4bit

        reason = probe_4bit()
        if reason is None:
            return load_4bit_model(checkpoint, ctx.precision)
        if not self.config.allow_fallback:
            raise SetupError(
                f"qlora: 4-bit training is not supported here: {reason}; set finetune "
                "allow_fallback: true to train plain LoRA instead"
            )
        ctx.log(f"qlora: 4-bit training is not supported here ({reason}); training plain LoRA")
        self.stats_fallback = reason
        return None
