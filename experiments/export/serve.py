"""Which llama-server to start for an export folder (`adaptwise serve`): the base GGUF with the
LoRA adapter, the merged or full model, or, for a recipe, the base GGUF its export wrote
(--quant) or else the run's own GGUF model (the embedded model). Every path read from
export.json must stay inside the export folder (the run's own model file is the one exception:
it must be a .gguf that exists)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.errors import AdaptwiseError
from experiments.llama_server import LlamaServer
from experiments.owned_files import is_inside

GGUF_FORMATS = ("gguf", "ollama")
GGUF_BASES = ("embedded-gguf", "gguf-file")


def read_export(folder: Path) -> dict:
    """export.json of an export folder; one line when it is not one."""
    folder = Path(folder)
    path = folder / "export.json"
    if not folder.is_dir():
        raise AdaptwiseError(f"{folder}: no such folder; give an `adaptwise export` folder")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            raise ValueError("no files")
        record["method"]["name"]  # noqa: B018 - the KeyError names what is missing
    except FileNotFoundError:
        raise AdaptwiseError(f"{folder}: no export.json; not an adaptwise export folder") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdaptwiseError(f"{path}: not a readable export.json ({exc})") from None
    return record


def inside(folder: Path, relative: object) -> Path:
    """`folder/relative`, refused unless it stays inside `folder` (export.json is input)."""
    if not isinstance(relative, str) or not relative:
        raise AdaptwiseError(f"{folder / 'export.json'}: a file entry is not a path")
    root = Path(folder).resolve()
    path = (root / relative).resolve()
    if not is_inside(root, path):
        raise AdaptwiseError(
            f"{folder / 'export.json'}: {relative!r} points outside the export folder; export again"
        )
    return path


def server_for_export(
    folder: Path,
    merged: bool = False,
    port: int = 0,
    threads: int | None = None,
    chat_template: str | None = None,
) -> tuple[LlamaServer, str]:
    """(a LlamaServer not yet started, what it serves in words) for the export in `folder`."""
    record = read_export(folder)
    files, method = record["files"], record["method"]["name"]
    fmt = record.get("format")
    extra = ["--jinja"] + (["--chat-template", chat_template] if chat_template else [])
    if fmt in GGUF_FORMATS:
        if not merged and "base_gguf" in files and "adapter_gguf" in files:
            base, lora = inside(folder, files["base_gguf"]), inside(folder, files["adapter_gguf"])
            what = f"{method}: {base.name} with the LoRA adapter {lora.name}"
        elif "merged_gguf" in files:
            base, lora = inside(folder, files["merged_gguf"]), None
            what = f"{method}: {base.name}"
        else:
            raise AdaptwiseError(f"{folder / 'export.json'}: lists no GGUF file; export again")
    elif fmt == "recipe":
        model = record.get("base_model") or {}
        if model.get("source") not in GGUF_BASES and "base_gguf" not in files:
            raise AdaptwiseError(
                f"{folder}: a recipe of {model.get('name') or 'a model'} ({model.get('source')}); "
                "llama-server serves GGUF files: serve its base model with your own server, or "
                "run the method on a GGUF model"
            )
        if "base_gguf" in files:  # written by export --quant
            base, lora = inside(folder, files["base_gguf"]), None
        else:
            base, lora = Path(str(model.get("reference") or "")), None
            if base.suffix != ".gguf" or not base.is_file():
                raise AdaptwiseError(f"{base}: the recipe's base GGUF is not there; export again")
        what = f"{method}: the base model {base.name} (the recipe's prompts go in the requests)"
    else:
        raise AdaptwiseError(
            f"{folder}: a {fmt} export; llama-server serves GGUF: export the method with "
            "--format gguf (or recipe, for a prompting or RAG method)"
        )
    server = LlamaServer(
        model=base, lora=lora, port=port, alias=method, threads=threads, extra=extra
    )
    return server, what
