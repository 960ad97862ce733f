"""`run`'s options for a served model (`--model openai:NAME`) and token prices; nothing heavy
is imported here (`adaptwise --help` stays fast)."""

from __future__ import annotations

import argparse

from experiments.context import RunOptions


def add_api_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "a served model (docs/served-models.md)",
        "--model openai:NAME runs the prompting and RAG methods on NAME behind an "
        "OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, gateways). The key is "
        "read from OPENAI_API_KEY and never written to any file or log.",
    )
    group.add_argument(
        "--base-url",
        help="the endpoint, e.g. http://127.0.0.1:8000/v1 (default: OPENAI_BASE_URL, else "
        "https://api.openai.com/v1)",
    )
    group.add_argument(
        "--tokenizer",
        help="a local folder, .gguf, hub id or `embedded` whose chat template renders prompts "
        "for the completions endpoint, so labels are scored by log-likelihood (default: the "
        "server's /props template where it has one, else chat messages and constrained "
        "generation)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=RunOptions.concurrency,
        help="requests in flight at once (default: %(default)s)",
    )
    group.add_argument(
        "--no-cache",
        action="store_true",
        help="ask the server again instead of reusing cached answers (cached by base URL, "
        "model and request body, so reruns and resumed runs pay nothing twice)",
    )
    group.add_argument(
        "--prompt-token-price",
        type=float,
        help="price per 1,000 prompt tokens (the task's costs: prompt_per_1k_tokens, else 0)",
    )
    group.add_argument(
        "--generated-token-price",
        type=float,
        help="price per 1,000 generated tokens (costs: generated_per_1k_tokens, else 0)",
    )


def api_run_options(args) -> dict:
    """RunOptions fields from the parsed arguments (absent on commands without the group)."""
    from experiments.errors import AdaptwiseError
    from experiments.numbers import check_number

    concurrency = getattr(args, "concurrency", 8)
    if concurrency < 1:
        raise AdaptwiseError("--concurrency must be at least 1")
    prices = {}
    for flag, key in (
        ("prompt_token_price", "prompt_per_1k_tokens"),
        ("generated_token_price", "generated_per_1k_tokens"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            prices[key] = float(check_number(value, f"--{flag.replace('_', '-')}"))
    model = getattr(args, "model", None) or ""
    for flag in ("base_url", "tokenizer"):
        if getattr(args, flag, None) and not model.startswith("openai:"):
            raise AdaptwiseError(
                f"--{flag.replace('_', '-')} applies to a served model: pass --model openai:NAME"
            )
    return {
        "base_url": getattr(args, "base_url", None),
        "tokenizer": getattr(args, "tokenizer", None),
        "concurrency": concurrency,
        "api_cache": not getattr(args, "no_cache", False),
        "prices": prices,
    }
