"""Token lengths of rows as a fine-tuning run would see them.

A row is rendered with the chat model's chat template (system instruction, the conversation,
the answer), the shape fine-tuning trains on, and its tokens counted. The tokenizer is the
embedded chat model's unless `model` names another (the model you mean to fine-tune).

A local model folder is read with the `tokenizers` library and its template rendered with
jinja2, as transformers does, because importing transformers (and with it torch) would cost
`data check` ten seconds or more; anything else goes through transformers' AutoTokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from experiments.task import Row

# The fine-tuning default (finetune.config.FinetuneConfig.max_length), used when neither the
# task's `finetune: max_length` nor --max-length says otherwise.
FALLBACK_MAX_LENGTH = 256


def default_max_length() -> int:
    """The fine-tuning package's default sequence length, or 256 where it is not installed."""
    try:
        from finetune.config import FinetuneConfig
    except ImportError:
        return FALLBACK_MAX_LENGTH
    return int(getattr(FinetuneConfig, "max_length", FALLBACK_MAX_LENGTH))


class Tokenizer:
    """Counts tokens and renders conversations with a model's chat template."""

    def __init__(self, encode_batch, chat_template: str | None, special: dict) -> None:
        self._encode_batch = encode_batch
        self._template = None
        if chat_template:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            self._template = env.from_string(chat_template)
        self._special = special

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text, without special tokens added."""
        return [len(ids) for ids in self._encode_batch(list(texts))] if texts else []

    def render(self, messages: list[dict]) -> str:
        """The conversation as one sequence (chat template, else the contents joined)."""
        if self._template is not None:
            return self._template.render(
                messages=messages, add_generation_prompt=False, **self._special
            )
        return "\n\n".join(m["content"] for m in messages)


def load_tokenizer(model: str | None = None) -> Tokenizer:
    """The tokenizer of `model` (default: the embedded chat model)."""
    from experiments.models import resolve_checkpoint

    checkpoint, _ = resolve_checkpoint(model, progress=lambda *_: None)
    folder = Path(checkpoint)
    if (folder / "tokenizer.json").is_file():
        return _from_folder(folder)
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(checkpoint)
    return Tokenizer(
        lambda texts: auto(texts, add_special_tokens=False)["input_ids"],
        getattr(auto, "chat_template", None),
        {"bos_token": auto.bos_token or "", "eos_token": auto.eos_token or ""},
    )


def _from_folder(folder: Path) -> Tokenizer:
    from tokenizers import Tokenizer as FastTokenizer

    fast = FastTokenizer.from_file(str(folder / "tokenizer.json"))
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    template = config.get("chat_template")
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    special = {key: _token_text(config.get(key)) for key in ("bos_token", "eos_token")}
    return Tokenizer(
        lambda texts: [e.ids for e in fast.encode_batch(texts, add_special_tokens=False)],
        template if isinstance(template, str) else None,
        special,
    )


def _token_text(value) -> str:
    if isinstance(value, dict):  # the older {"content": "<s>", ...} form
        return str(value.get("content", ""))
    return str(value or "")


def row_lengths(tokenizer: Tokenizer, rows: Sequence[Row], instruction: str = "") -> list[int]:
    """Token count of each row rendered as one training sequence."""
    system = [{"role": "system", "content": instruction}] if instruction else []
    texts = [
        tokenizer.render([*system, *r.messages, {"role": "assistant", "content": r.output}])
        for r in rows
    ]
    return tokenizer.count(texts)


def summary(lengths: Sequence[int], max_length: int) -> dict:
    """min / median / p95 / max of the lengths and how many exceed `max_length`."""
    if not lengths:
        return {"min": 0, "median": 0, "p95": 0, "max": 0, "over_max": 0}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
        "over_max": sum(n > max_length for n in ordered),
    }
