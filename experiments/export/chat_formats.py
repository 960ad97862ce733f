"""The chat format a model's Jinja chat template belongs to, and that format as an Ollama
(Go) template with its stop strings.

Ollama renders prompts with Go templates, not Jinja, so a Modelfile cannot carry the model's own
template. The family is recognised by rendering the model's template on sample conversations
and comparing the text with each known format's, character for character; a template that is
none of them is refused in one line rather than guessed. Every Go template here renders
Ollama's `.Messages` (the system message included: a Modelfile's SYSTEM is prepended to a
request that has none) followed by the opening of the assistant's turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from experiments.errors import AdaptwiseError

Messages = list[dict]

SAMPLES: tuple[Messages, ...] = (
    [{"role": "system", "content": "Sys A."}, {"role": "user", "content": "Question one?"}],
    [
        {"role": "system", "content": "Sys B."},
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": "Answer one."},
        {"role": "user", "content": "Second?"},
    ],
)


@dataclass(frozen=True)
class ChatFamily:
    name: str
    render: Callable[[Messages, str], str]  # (messages, eos) -> the prompt, answer turn opened
    ollama_template: str
    stops: tuple[str, ...]


def _chatml(messages: Messages, eos: str) -> str:
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def _llama3(messages: Messages, eos: str) -> str:
    body = "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
        for m in messages
    )
    return body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _phi3(messages: Messages, eos: str) -> str:
    body = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return body + "<|assistant|>\n"


def _mistral(messages: Messages, eos: str) -> str:
    """[INST] turns; the system text opens the first user turn, then a blank line."""
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    out, first = [], True
    for m in messages:
        if m["role"] == "user":
            lead = f"{system}\n\n" if system and first else ""
            out.append(f"[INST] {lead}{m['content']} [/INST]")
            first = False
        elif m["role"] == "assistant":
            out.append(f"{m['content']}{eos}")
    return "".join(out)


FAMILIES = (
    ChatFamily(
        "chatml",
        _chatml,
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n",
        ("<|im_end|>",),
    ),
    ChatFamily(
        "llama3",
        _llama3,
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
        ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"),
    ),
    ChatFamily(
        "mistral",
        _mistral,
        '{{- range $i, $m := .Messages }}{{ if eq $m.Role "user" }}[INST] '
        "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}{{ $m.Content }} [/INST]"
        '{{ else if eq $m.Role "assistant" }}{{ $m.Content }}</s>{{ end }}{{ end }}',
        ("[INST]", "[/INST]", "</s>"),
    ),
    ChatFamily(
        "phi3",
        _phi3,
        "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
        ("<|end|>", "<|endoftext|>", "<|user|>", "<|assistant|>"),
    ),
)


@dataclass(frozen=True)
class Recognised:
    family: ChatFamily
    bos_in_template: bool  # the Jinja template writes the BOS token itself (llama.cpp adds it)


def recognise(tokenizer, where: str) -> Recognised:
    """The family of the tokenizer's chat template; one line when it is none of them."""
    if not getattr(tokenizer, "chat_template", None):
        raise AdaptwiseError(
            f"{where}: the model has no chat template; an Ollama TEMPLATE cannot be derived "
            "(export --format gguf and write the Modelfile's TEMPLATE by hand)"
        )
    eos = tokenizer.eos_token or ""
    bos = tokenizer.bos_token or ""
    rendered = []
    for sample in SAMPLES:
        try:
            text = tokenizer.apply_chat_template(sample, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a template may refuse a system turn, in any way
            text = None
        rendered.append(text)
    for family in FAMILIES:
        expected = [family.render(sample, eos) for sample in SAMPLES]
        if rendered == expected:
            return Recognised(family, False)
        if bos and rendered == [bos + e for e in expected]:
            return Recognised(family, True)
    names = ", ".join(f.name for f in FAMILIES)
    raise AdaptwiseError(
        f"{where}: the chat template is none of the formats adaptwise can write as an Ollama "
        f"TEMPLATE ({names}); export --format gguf and write the Modelfile's TEMPLATE by hand"
    )


def stop_strings(tokenizer, answer_end: str, family: ChatFamily | None = None) -> list[str]:
    """Where a reply ends: the run's end-of-answer text, the EOS token, the family's stops."""
    out: list[str] = []
    for stop in (answer_end, tokenizer.eos_token or "", *(family.stops if family else ())):
        if stop and stop not in out:
            out.append(stop)
    return out
