"""QLoRA: a LoRA adapter trained on a 4-bit NF4 base (bitsandbytes).

bitsandbytes trains 4-bit models on CUDA GPUs and, in this version, on its CPU backend. Support
is detected with a tiny forward/backward probe through one 4-bit layer rather than assumed from
the platform.

On a CPU with AVX-512 BF16, bitsandbytes repacks a 4-bit layer's weights into a bf16 kernel's
layout the first time it runs without gradients in eval mode, which validation during
training does. The repacked weights then train to garbage, and a layer whose output size is
not a multiple of 32 fails outright (`shape '[32, 0]' is invalid`: the test suite's tiny
model). Every 4-bit layer loaded here has that repacking switched off, so training,
validation and scoring all use the one layout that trains.
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


def load_4bit_model(checkpoint: str, precision: str = "fp32"):
    """A fresh NF4 base (double-quantised, as the QLoRA paper) computing in `precision`.

    peft's prepare_model_for_kbit_training is not used: it upcasts every non-4-bit weight
    (embeddings, lm_head, norms) to float32, which on an 8B model is 2 GB more than the bf16
    copy the memory estimate counts; those weights are frozen under LoRA, so their width only
    costs memory. Checkpointing is non-reentrant (finetune/sft_trainer.py), so the frozen
    embeddings need no input-gradient hook."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from experiments.precision import torch_dtype

    dtype = torch_dtype(precision)
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )
    device_map = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=quant, dtype=dtype, device_map=device_map
    )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    no_cpu_repacking(model)
    return model


def no_cpu_repacking(model) -> None:
    """Switch off bitsandbytes' eval-time repacking of 4-bit weights on CPUs (module docstring)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
