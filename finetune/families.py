"""The fine-tuning methods by name, one family per file: `lora`, `qlora` and `full-ft`. The
registry (experiments/run/registry.py), the hybrids and the sweep build them here."""

from __future__ import annotations

from experiments.methods import Method
from finetune.full_ft import FullFinetuneMethod
from finetune.lora import LoraMethod
from finetune.methods import FinetuneMethod
from finetune.qlora import QloraMethod

FAMILIES: dict[str, type[FinetuneMethod]] = {
    "lora": LoraMethod,
    "qlora": QloraMethod,
    "full-ft": FullFinetuneMethod,
}


def finetune_method(
    name: str, options: dict, folder_name: str | None = None, label: str | None = None
) -> FinetuneMethod:
    """The fine-tuning method `name` (lora, qlora, full-ft), training into `folder_name`."""
    return FAMILIES[name](name, options, folder_name, label)


def resolve(name: str, options: dict) -> Method | None:
    return finetune_method(name, options) if name in FAMILIES else None
