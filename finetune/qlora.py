"""QLoRA: a LoRA adapter trained on a 4-bit NF4 base (bitsandbytes).

bitsandbytes trains 4-bit models on CUDA GPUs and, in this version, on its CPU backend. Support
is detected with a tiny forward/backward probe through one 4-bit layer rather than assumed from
the platform. Known on the CPU backend: a 4-bit model that has run a forward pass without
gradients (generation, evaluation) gets its weights repacked and then trains to garbage, so the
model trained here is always freshly loaded and trained before any inference.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def probe_4bit() -> str | None:
    """None when 4-bit training works here, else a one-line reason."""
    try:
        import bitsandbytes as bnb
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means "unsupported"
        return f"bitsandbytes is not usable ({type(exc).__name__}: {str(exc)[:80]})"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.manual_seed(0)
        layer = bnb.nn.Linear4bit(
            64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4"
        ).to(device)
        x = torch.randn(4, 64, device=device, requires_grad=True)
        layer(x).pow(2).mean().backward()
        if x.grad is None or not torch.isfinite(x.grad).all() or x.grad.abs().sum() == 0:
            return "a 4-bit layer gave no usable gradient"
    except Exception as exc:  # noqa: BLE001 - the probe reports, whatever failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"4-bit layers do not train on {device} ({first[:100]})"
    return None


def load_4bit_model(checkpoint: str):
    """A fresh NF4 base with float32 compute, prepared for k-bit training."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=False,
    )
    device_map = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=quant, dtype=torch.float32, device_map=device_map
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
