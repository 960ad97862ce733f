"""One precision for the whole run: label scoring, generation, training and QLoRA's compute.

`auto` is bf16 on a GPU that supports it, fp16 (with loss scaling when training) on one that
does not, and fp32 on a CPU. How each method applies it:

| precision | inference and frozen bases | full fine-tuning | LoRA adapters |
|---|---|---|---|
| bf16 | bf16 weights | bf16 weights and AdamW state (pure bf16) | fp32, bf16 autocast |
| fp16 | fp16 weights | fp32 master weights, fp16 autocast, loss scaling | fp32, fp16 autocast |
| fp32 | fp32 | fp32 | fp32 |

Log-probabilities are always computed in float32 from the logits.
"""

from __future__ import annotations

from experiments.errors import AdaptwiseError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def check_precision(value: str, where: str = "--precision") -> str:
    if value not in PRECISIONS:
        raise AdaptwiseError(f"{where} {value!r}: choose one of {', '.join(PRECISIONS)}")
    return value


def resolve_precision(requested: str | None, device: str | None = None) -> str:
    """bf16, fp16 or fp32 for `requested` (auto when None) on `device` (detected when None)."""
    requested = check_precision(requested or "auto")
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return precision_for(requested, device, device == "cuda" and torch.cuda.is_bf16_supported())


def precision_for(requested: str, device: str, bf16_supported: bool) -> str:
    """The rule of `resolve_precision` without torch: on `device` ("cuda" or "cpu"), whose
    bfloat16 support is `bf16_supported`; the plan applies it to the machine it plans for."""
    requested = check_precision(requested or "auto")
    if requested == "auto":
        if device == "cuda":
            return "bf16" if bf16_supported else "fp16"
        return "fp32"
    if requested == "bf16" and device == "cuda" and not bf16_supported:
        raise AdaptwiseError(
            "--precision bf16: this GPU has no bfloat16 support; use --precision fp16 (or auto)"
        )
    if requested == "fp16" and device == "cpu":
        raise AdaptwiseError(
            "--precision fp16 trains only on a GPU (loss scaling needs CUDA); on a CPU use "
            "bf16 or fp32 (auto)"
        )
    return requested


def bf16_supported_by_name(gpu_name: str | None) -> bool:
    """Whether a GPU of this name has bfloat16, for a plan made for a GPU this process does not
    see (a run asks torch about its own): GPUs before Ampere have none."""
    name = (gpu_name or "").upper()
    return not any(t in name for t in ("T4", "V100", "P100", "P40", "K80", "GTX", "RTX 20"))


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def weights_dtype(precision: str, trains_every_weight: bool = False):
    """The dtype to load weights in: fp16 full fine-tuning keeps fp32 master weights."""
    import torch

    if trains_every_weight and precision == "fp16":
        return torch.float32
    return torch_dtype(precision)


def trainer_flags(precision: str) -> dict:
    """The transformers TrainingArguments that run the training step in `precision`."""
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
