"""Chat with a model by hand: the base model, a PEFT adapter on it, or a fully fine-tuned
folder; and which of those a run's method produced. Used by `adaptwise chat` and the TUI's
chat screen (through a child process). torch, transformers and peft load inside functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from experiments.errors import AdaptwiseError

EMBEDDED_SUFFIX = "(embedded)"  # runner.py records the embedded model as "<name> (embedded)"


@dataclass
class ChatModel:
    model: object
    tokenizer: object
    name: str

    def reply(self, messages: list[dict], max_new_tokens: int = 256) -> str:
        """The model's greedy answer to a conversation (chat template, or Alpaca)."""
        from finetune.adapters import reply

        return reply(self.model, self.tokenizer, messages, max_new_tokens)


def load_chat_model(
    model: str | None = None, adapter: str | Path | None = None, progress=print
) -> ChatModel:
    """The base model `model` (None: the embedded one), with `adapter` on it if given."""
    from experiments.models import load_language_model

    lm = load_language_model(model, progress=progress)
    if adapter is None:
        return ChatModel(lm.model, lm.tokenizer, lm.name)
    from finetune.adapters import load_adapter

    return ChatModel(load_adapter(lm.model, adapter), lm.tokenizer, f"{lm.name} + {adapter}")


@dataclass(frozen=True)
class ChatTarget:
    """What to load for one method of a run."""

    model: str | None  # base model spec, or a full fine-tuned folder
    adapter: Path | None
    describe: str


def target_for_method(run_dir: Path, method: str) -> ChatTarget:
    """The base model for prompting and RAG methods; `<run>/<method>/adapter` or `.../model`
    (or `.../merged`) for fine-tuned ones."""
    base = _run_model(run_dir)
    folder = run_dir / method
    adapter, full, merged = folder / "adapter", folder / "model", folder / "merged"
    if (adapter / "adapter_config.json").is_file():
        return ChatTarget(base, adapter, f"{method}: adapter {adapter}")
    for candidate in (full, merged):
        if (candidate / "config.json").is_file():
            return ChatTarget(str(candidate), None, f"{method}: model {candidate}")
    if method.split("+")[-1] in ("lora", "qlora", "full-ft"):
        raise AdaptwiseError(f"{folder}: no adapter/ or model/ folder; rerun {method} to chat")
    return ChatTarget(base, None, f"{method}: base model {base or 'SmolLM2-135M-Instruct'}")


def load_for_method(run_dir: Path, method: str, progress=print) -> ChatModel:
    target = target_for_method(run_dir, method)
    chat = load_chat_model(target.model, target.adapter, progress=progress)
    chat.name = target.describe
    return chat


def _run_model(run_dir: Path) -> str | None:
    from experiments.run_files import read_results

    results = read_results(run_dir)
    options = results.get("options") if isinstance(results, dict) else None
    model = options.get("model") if isinstance(options, dict) else None
    if not model or str(model).endswith(EMBEDDED_SUFFIX):
        return None
    return model
