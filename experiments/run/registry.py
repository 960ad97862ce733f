"""Every method by name: the prompting methods of experiments/prompting.py, and the methods other
packages define (RAG, fine-tuning, the hybrids), named here as "module:function" strings and
imported only when a name needs them. The registry sits above those packages: they import
experiments.methods for the Method interface and nothing imports them back but this module,
so no import cycle runs through the method families.
"""

from __future__ import annotations

import importlib
import re

from experiments.context import RunOptions
from experiments.errors import AdaptwiseError
from experiments.methods import Method
from experiments.prompting import PROMPTING, PromptingMethod

# Each function takes (name, options) and returns the Method, or None for a name not its own.
RESOLVERS = ("rag.methods:resolve", "finetune.families:resolve", "finetune.hybrid:resolve")
ALL_METHOD_NAMES = (
    *PROMPTING,
    "rag",
    "rag-hybrid",
    "rag-dense",
    "lora",
    "qlora",
    "full-ft",
    "rag+lora",
    "rag+qlora",
    "rag+full-ft",
    "raft",
)


def make_method(name: str, options: dict) -> Method:
    """Build a method from its name; `few-shot-jaccard-k8` overrides the number of examples."""
    base, k = split_k(name, options.get("k", RunOptions.k))
    if base in PROMPTING:
        if PROMPTING[base] and k < 1:
            raise AdaptwiseError(f"method {name!r}: k must be at least 1")
        return PromptingMethod(name, PROMPTING[base], k)
    for spec in RESOLVERS:
        module, _, function = spec.partition(":")
        method = getattr(importlib.import_module(module), function)(name, options)
        if method is not None:
            return method
    known = ", ".join([*ALL_METHOD_NAMES, "<few-shot or rag name>-k<N>"])
    raise AdaptwiseError(f"unknown method {name!r}; available: {known}")


def split_k(method: str, default_k: int) -> tuple[str, int]:
    """(the method's name without its `-kN`, N), or (name, default_k) when it has none."""
    match = re.fullmatch(r"(.+?)-k(\d+)", method)
    return (match.group(1), int(match.group(2))) if match else (method, default_k)
