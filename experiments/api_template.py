"""The chat template that renders prompts for a served model, without the model's weights.

The completions endpoint takes prompt text, so prompts rendered here are exactly what the model
reads, and label log-likelihoods can be scored on them as in-process. The template comes from
`--tokenizer` (a local folder, .gguf or hub id: its tokenizer) or from the server itself
(llama.cpp's `GET /props` gives `chat_template`). Without one, prompts go to the chat endpoint
as messages and the server applies its own template; `ChatTranscript` then only shows them.
"""

from __future__ import annotations

# Shown in predictions.jsonl when the server templates the messages itself (chat endpoint).
TRANSCRIPT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]\n{% endif %}"
)


class TemplateTokenizer:
    """What `PromptFormat` needs of a tokenizer: a chat template and the special tokens."""

    def __init__(self, chat_template: str, bos_token: str | None, eos_token: str | None):
        self.chat_template = chat_template
        self.bos_token = bos_token
        self.eos_token = eos_token

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        special = {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token))}
        rendered, _ = render_jinja_template(
            conversations=[list(messages)],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **{k: v for k, v in special.items() if v is not None},
        )
        return rendered[0]


def chat_transcript() -> TemplateTokenizer:
    """A readable rendering for prompts sent as messages (the server templates them)."""
    return TemplateTokenizer(TRANSCRIPT_TEMPLATE, None, None)


def tokenizer_template(spec: str, trust_remote_code: bool = False, progress=print):
    """The tokenizer of a local model folder, .gguf, hub id or `embedded` (its chat template)."""
    from transformers import AutoTokenizer

    from experiments.errors import SetupError
    from experiments.models import resolve_checkpoint

    checkpoint, name = resolve_checkpoint(None if spec == "embedded" else spec, progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SetupError(f"--tokenizer {spec}: no tokenizer loads: {first[:160]}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise SetupError(
            f"--tokenizer {spec}: {name} has no chat template; name the served model's own "
            "tokenizer (a folder, .gguf or hub id)"
        )
    return tokenizer
