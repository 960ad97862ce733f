"""Load a saved adapter onto its base model, and reply to a chat with the result."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.errors import AdaptwiseError, SetupError


def load_adapter(model, adapter_dir: str | Path):
    """Wrap `model` with the PEFT adapter in `adapter_dir`, with one-line errors for a missing
    folder, a folder that is not an adapter, and an adapter trained for another base model."""
    folder = Path(adapter_dir)
    config_path = folder / "adapter_config.json"
    if not folder.is_dir():
        raise SetupError(f"{folder}: adapter folder not found")
    if not config_path.is_file():
        raise SetupError(f"{folder}: not a PEFT adapter folder (no adapter_config.json)")
    weights = [folder / "adapter_model.safetensors", folder / "adapter_model.bin"]
    if not weights[0].is_file():
        if weights[1].is_file():
            raise SetupError(
                f"{weights[1]}: the adapter's weights are a pickle file, which adaptwise does "
                "not load (it can run code); save the adapter as adapter_model.safetensors"
            )
        # PEFT would otherwise look for the weights on the hub under the folder's name.
        raise SetupError(f"{folder}: no adapter_model.safetensors; the adapter has no weights")
    try:
        base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise SetupError(f"{config_path}: unreadable adapter config ({exc})") from None
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder)).eval()
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        text = str(exc)
        if "size mismatch" in text or "not found in the base model" in text or "Target" in text:
            raise AdaptwiseError(
                f"{folder}: this adapter was trained for another base model ({base}); pass that "
                "model with --model"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise AdaptwiseError(f"{folder}: could not load the adapter ({first[:160]})") from None


def reply(model, tokenizer, messages: list[dict], max_new_tokens: int = 256) -> str:
    """The model's greedy answer to a conversation (chat template, or Alpaca without one)."""
    import torch

    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        turns = [
            f"### {'Input' if m['role'] != 'assistant' else 'Response'}:\n{m['content']}\n\n"
            for m in messages
        ]
        text = "".join(turns) + "### Response:\n"
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
