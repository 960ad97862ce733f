"""How to serve an export: the llama-server, Ollama, vLLM and transformers command lines for the
files an export holds (run in the export folder), and Ollama's Modelfile."""

from __future__ import annotations

import shlex

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed --max-lora-rank


def vllm_rank(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds `rank`."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), rank)


def llama_server(files: dict) -> str | None:
    if "merged_gguf" not in files:
        return None
    if "base_gguf" in files and "adapter_gguf" in files:
        return (
            f"llama-server -m {files['base_gguf']} --lora {files['adapter_gguf']} --jinja "
            f"--temp 0 --port 8080   # or the merged model: llama-server -m "
            f"{files['merged_gguf']} --jinja --temp 0 --port 8080"
        )
    return f"llama-server -m {files['merged_gguf']} --jinja --temp 0 --port 8080"


def ollama(files: dict, name: str) -> str | None:
    if "modelfile" not in files:
        return None
    return f"ollama create {name} -f {files['modelfile']} && ollama run {name}"


def vllm(files: dict, base_reference: str, gguf, name: str, rank: int | None) -> str | None:
    """`vllm serve` for the export's weights: the base with the adapter as a LoRA module, or the
    full model. A base that is only a GGUF (`gguf`) needs the vllm export's base/ copy."""
    if "adapter" in files and rank is not None:
        if "base" not in files and gguf is not None:
            return None
        base = files.get("base", base_reference).rstrip("/")
        return (
            f"vllm serve {shlex.quote(base)} --enable-lora --lora-modules "
            f"{name}={files['adapter'].rstrip('/')} --max-lora-rank {vllm_rank(rank)}"
        )
    if "merged" in files:
        return f"vllm serve {files['merged'].rstrip('/')} --served-model-name {name}"
    return None


def _load(reference: str, gguf) -> str:
    """transformers' call that loads a model: a folder or hub id, or a GGUF file."""
    if gguf is not None:
        return (
            f"AutoModelForCausalLM.from_pretrained({str(gguf.parent)!r}, gguf_file={gguf.name!r})"
        )
    return f"AutoModelForCausalLM.from_pretrained({reference!r})"


IMPORTS = "from transformers import AutoModelForCausalLM, AutoTokenizer\n"


def transformers(files: dict, base_reference: str, gguf) -> str | None:
    """Python that loads the export with transformers (and peft for an adapter)."""
    if "merged" in files:
        folder = files["merged"].rstrip("/")
        return (
            f"{IMPORTS}model = {_load(folder, None)}\n"
            f"tokenizer = AutoTokenizer.from_pretrained({folder!r})"
        )
    if "adapter" in files:
        folder = files["adapter"].rstrip("/")
        base = _load(files["base"].rstrip("/"), None) if "base" in files else None
        base = base or _load(base_reference, gguf)
        return (
            f"{IMPORTS}from peft import PeftModel\n"
            f"model = PeftModel.from_pretrained({base}, {folder!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({folder!r})"
        )
    if "merged_gguf" in files:
        name = files["merged_gguf"]
        return (
            f"{IMPORTS}model = AutoModelForCausalLM.from_pretrained('.', gguf_file={name!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained('.', gguf_file={name!r})"
        )
    return None


def base_model(base: dict, gguf, files: dict) -> dict:
    """A recipe's model is the run's base model as it is: how each server loads it (the
    prompts come from the recipe, sent as raw text to a completions endpoint)."""
    if base["source"] == "served":
        return {}
    tokenizer = files.get("tokenizer", "tokenizer/")
    load = f"{IMPORTS}model = {_load(base['reference'], gguf)}\n"
    out = {"transformers": f"{load}tokenizer = AutoTokenizer.from_pretrained({tokenizer!r})"}
    if gguf is not None:
        out["llama_server"] = (
            f"llama-server -m {shlex.quote(str(gguf))} --jinja --temp 0 --port 8080"
        )
    else:
        out["vllm"] = f"vllm serve {shlex.quote(base['reference'])}"
    return out


def modelfile(files: dict, template: str, system: str, stops: list[str], note: str) -> str:
    """An Ollama Modelfile: the base GGUF with the LoRA GGUF on it (else the merged model), the
    Go template, the method's system text, its stop strings and greedy decoding."""
    lines = [f"# {note}"]
    if "base_gguf" in files and "adapter_gguf" in files:
        lines += [f"FROM ./{files['base_gguf']}", f"ADAPTER ./{files['adapter_gguf']}"]
        lines.append(f"# or, without the adapter: FROM ./{files['merged_gguf']}")
    else:
        lines.append(f"FROM ./{files['merged_gguf']}")
    lines.append(f'TEMPLATE """{template}"""')
    lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in stops]
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
