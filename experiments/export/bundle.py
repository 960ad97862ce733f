"""`adaptwise export`: one method of a run folder as a folder that ships it.

The folder is built in a temporary folder next to `--out` and renamed into place, with the
manifest that marks it as `adaptwise export`'s (experiments/owned_files.py), so an interruption
leaves the old folder or the new one, never a mix, and nothing outside `--out` is written
(beyond adaptwise's cache of a converted GGUF base, which `run` made already).

One file, past 450 lines, because it is the one transaction of an export: every format's
writer puts its files into the same temporary build folder and adds them to the same record,
which is checked and renamed into place once; the formats' own rules live in gguf_file.py,
recipe.py, serve.py and model_card.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from experiments.atomic import set_default_modes, swap_in
from experiments.errors import AdaptwiseError
from experiments.export import chat_formats, gguf_file, model_card, serving
from experiments.export.recipe import (
    INDEX,
    POOL,
    POOL_VECTORS,
    RECIPE,
    TOKENIZER,
    load_recipe,
    recipe_spec,
    row_record,
    uses_question_vectors,
)
from experiments.export.source import (
    MethodSource,
    check_format,
    describe_settings,
    read_method,
)
from experiments.owned_files import MANIFEST, check_replaceable, manifest_text, plain_name

COMMAND = "export"
EXPORT_JSON = "export.json"
FORMAT_VERSION = 1
MODEL_CARD = "MODEL_CARD.md"
CHAT_TEMPLATE = "chat_template.jinja"
MODELFILE = "Modelfile"
VLLM_SCRIPT = "vllm-serve.sh"
ADAPTER_QUANT = {"q4_0": "q8_0"}  # a rank-16 adapter in 4 bits loses too much; llama.cpp's
# own LoRA converter offers f32, f16, bf16 and q8_0


def export_method(
    run_dir: Path,
    method: str,
    fmt: str,
    out: Path,
    quant: str | None = None,
    overwrite: bool = False,
    tokenizer_gguf: Path | None = None,
    log=print,
) -> dict:
    """Export `method` of the run in `run_dir` as `fmt` into `out`; returns export.json."""
    run_dir, out = Path(run_dir), Path(out)
    source = read_method(run_dir, method)
    check_format(source, fmt, quant)
    if quant is not None and quant not in gguf_file.QUANTS:
        raise AdaptwiseError(f"--quant {quant!r}: choose one of {', '.join(gguf_file.QUANTS)}")
    if fmt in ("gguf", "ollama"):
        quant = quant or gguf_file.DEFAULT_QUANT
    if tokenizer_gguf is not None and not Path(tokenizer_gguf).is_file():
        raise AdaptwiseError(f"--tokenizer-gguf {tokenizer_gguf}: no such file")
    if fmt == "merged":  # a missing folder is one line before anything loads
        source.merged_folder()
    elif fmt != "recipe" or source.family == "hybrid":
        source.model_folder()
    inputs = [run_dir, source.task_path, tokenizer_gguf]
    if source.base.source in ("local-folder", "gguf-file"):
        inputs.append(source.base.reference)
    check_replaceable(out, COMMAND, overwrite, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        started = time.perf_counter()
        record = _build(source, fmt, quant, build, tokenizer_gguf, log)
        record["export_s"] = round(time.perf_counter() - started, 2)
        _write_text(build / EXPORT_JSON, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        entries = [p.name for p in build.iterdir()]
        _write_text(build / MANIFEST, manifest_text(COMMAND, entries))
        set_default_modes(build)
        swap_in(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return record


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _build(source: MethodSource, fmt: str, quant, build: Path, tokenizer_gguf, log) -> dict:
    from experiments.prompts import PromptFormat, system_text

    tokenizer = _tokenizer(source)
    task = source.task if fmt == "recipe" else source.prompt_task()
    system = system_text(task)
    fmt_prompt = PromptFormat(tokenizer, system)
    files: dict[str, str] = {}
    details: dict = {}
    family = None
    if fmt == "ollama":  # refuse an unknown chat template before writing anything
        family = chat_formats.recognise(tokenizer, f"{source.base.name}").family
        if '"""' in system:
            raise AdaptwiseError(
                f'{task.path}: the instruction holds """, which a Modelfile cannot hold'
            )
    stops = chat_formats.stop_strings(tokenizer, fmt_prompt.answer_end, family)
    if fmt == "recipe":
        details["recipe"] = _write_recipe(source, task, system, tokenizer, build, files, log)
        if quant is not None:
            details["gguf"] = _write_base_gguf(
                source, quant, build, tokenizer, tokenizer_gguf, files, log
            )
    elif fmt == "adapter":
        files["adapter"] = _copy(source.model_folder(), build, "adapter")
    elif fmt == "merged":
        files["merged"] = _copy(source.merged_folder(), build, "merged")
    elif fmt in ("gguf", "ollama"):
        details["gguf"] = _write_gguf(source, quant, build, tokenizer, tokenizer_gguf, files, log)
    elif fmt == "vllm":
        details["vllm"] = _write_vllm(source, build, files, log)
    if fmt == "ollama":
        note = (
            f"adaptwise export of {source.name} ({source.run_dir}); the template is the "
            f"{family.name} format, recognised from the model's chat template"
        )
        text = serving.modelfile(files, family.ollama_template, system, stops, note)
        _write_text(build / MODELFILE, text)
        files["modelfile"] = MODELFILE
    if getattr(tokenizer, "chat_template", None):
        _write_text(build / CHAT_TEMPLATE, tokenizer.chat_template)
        files["chat_template"] = CHAT_TEMPLATE
    files["model_card"] = MODEL_CARD
    record = _record(source, fmt, quant, files, system, stops, tokenizer, family, details)
    figures = model_card.method_figures(source.results, source.records, source.name)
    record["metrics"] = figures["intervals"]
    record["cost"] = figures["costs"]
    card = model_card.render(record, figures, describe_settings(source))
    _write_text(build / MODEL_CARD, card)
    return record


def _record(source, fmt, quant, files, system, stops, tokenizer, family, details) -> dict:
    from experiments.context import RunContext, RunOptions

    task = source.results["task"]
    kind = task["kind"]
    options = RunOptions(max_new_tokens=source.options.get("max_new_tokens"))
    max_new = RunContext(SimpleNamespace(kind=kind), options).max_new_tokens
    name = _served_name(source)
    rank = None
    if "adapter" in files:
        rank = gguf_file.lora_settings(source.model_folder()).rank
    if fmt == "recipe" and source.family != "hybrid":
        serve = serving.base_model(source.base.to_dict(), source.base.gguf, files)
    else:
        serve = {
            "llama_server": serving.llama_server(files),
            "ollama": serving.ollama(files, name),
            "vllm": serving.vllm(files, source.base.reference, source.base.gguf, name, rank),
            "transformers": serving.transformers(files, source.base.reference, source.base.gguf),
        }
    missing = _serve_missing(source, fmt)
    digest = hashlib.sha256((source.run_dir / "results.json").read_bytes()).hexdigest()
    return {
        "format_version": FORMAT_VERSION,
        "tool": f"adaptwise {_version()}",
        "run": {
            "path": str(source.run_dir.resolve()),
            "results_sha256": digest,
            "task": task["name"],
            "kind": kind,
            "metric": task["metric"],
        },
        "method": {
            "name": source.name,
            "family": source.family,
            "trained": source.trained_method,
            "description": source.entry.get("description", ""),
        },
        "format": fmt,
        "quant": quant,
        "base_model": source.base.to_dict(),
        "files": files,
        "chat": {
            "template": getattr(tokenizer, "chat_template", None),
            "family": family.name if family else None,
            "system": system,
            "stop": stops,
            "bos_token": tokenizer.bos_token,
            "eos_token": tokenizer.eos_token,
        },
        "generation": {
            "kind": kind,
            "labels": list(task.get("labels") or []),
            "greedy": True,
            "max_new_tokens": max_new,
            "stop_at_newline": kind == "qa",  # experiments.local_scoring.generate_answers_local
            "calibrate": bool(source.options.get("calibrate")),
        },
        "data": {
            "n_train": task.get("n_train"),
            "train_fingerprint": task.get("train_fingerprint"),
            "n_eval": task.get("n_eval"),
            "eval_fingerprint": task.get("eval_fingerprint"),
        },
        **details,
        "serve": {k: v for k, v in serve.items() if v},
        "serve_missing": {k: text for k, text in missing.items() if not serve.get(k)},
        "prompts_from": _prompts_from(source, fmt),
    }


def _prompts_from(source: MethodSource, fmt: str) -> str:
    """Where the prompts the model must be sent come from (a hybrid's hold retrieved passages)."""
    if fmt == "recipe":
        return (
            "recipe: load_recipe(this folder).prompt_for(row).text, chat template applied "
            "already: send it as raw text (a completions endpoint), not as chat messages"
        )
    if source.family == "hybrid":
        return (
            "a RAG recipe: the model was scored on prompts with retrieved passages; export them "
            f"with `adaptwise export {source.run_dir} --method {source.name} --format recipe`"
        )
    return "chat: the system text, then the row as the user's turn (the run's zero-shot prompt)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adaptwise")
    except PackageNotFoundError:
        return "(not installed)"


def _served_name(source: MethodSource) -> str:
    from experiments.task import safe_folder_name

    return safe_folder_name(f"{source.results['task']['name']}-{source.name}").lower()


def _serve_missing(source: MethodSource, fmt: str) -> dict:
    """What to export instead, per server, when this format cannot serve there."""
    if fmt == "recipe" and source.family != "hybrid":
        text = (
            "a recipe's prompts are built by adaptwise (`load_recipe(this folder).prompt_for("
            "row).text`, experiments/export/recipe.py) and sent to the base model as they are; "
            "this server cannot load the base model as the run named it"
        )
        return dict.fromkeys(("llama_server", "ollama", "vllm", "transformers"), text)
    again = f"adaptwise export {source.run_dir} --method {source.name} --format"
    return {
        "llama_server": f"export the GGUF files: `{again} gguf`",
        "ollama": f"export the Modelfile and GGUF files: `{again} ollama`",
        "vllm": f"export the adapter and the command line: `{again} vllm`",
        "transformers": f"export the weights: `{again} merged`",
    }


def _tokenizer(source: MethodSource):
    """The run's tokenizer: the fine-tuned model's own folder, else the base model's."""
    from transformers import AutoTokenizer

    folder = None
    if source.trained_method is not None:
        folder = source.artefact("model" if source.trained_method == "full-ft" else "adapter")
    if folder is None or not (folder / "tokenizer_config.json").is_file():
        folder = source.base.checkpoint()
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AdaptwiseError(f"{folder}: could not load the tokenizer ({exc})") from None


def _copy(folder: Path, build: Path, name: str) -> str:
    shutil.copytree(folder, build / name, ignore=shutil.ignore_patterns(".*"))
    return f"{name}/"


# --- GGUF -----------------------------------------------------------------------------------


def _tokenizer_metadata(source: MethodSource, tokenizer, given: Path | None):
    """tokenizer.* of a GGUF whose tokens are the model's: --tokenizer-gguf, the base's own GGUF,
    or the embedded model's (the same tokenizer as every SmolLM2)."""
    from experiments.models import embedded_gguf_path

    candidates = []
    if given is not None:
        candidates.append((Path(given), False))
    if source.base.gguf is not None:
        candidates.append((source.base.gguf, True))
    else:
        try:
            candidates.append((embedded_gguf_path(), False))
        except AdaptwiseError:
            pass
    for path, general in candidates:
        meta = gguf_file.read_tokenizer_metadata(path, general)
        if gguf_file.matches_tokenizer(meta, tokenizer):
            return meta
        if given is not None and path == Path(given):
            raise AdaptwiseError(
                f"--tokenizer-gguf {given}: its tokens are not the model's tokenizer's; pass a "
                "GGUF of the same base model"
            )
    raise AdaptwiseError(
        f"{source.base.reference}: a GGUF needs the tokenizer as llama.cpp stores it, and this "
        "base is not a GGUF; pass --tokenizer-gguf FILE (a GGUF of the same base, e.g. from the "
        "hub), or export --format merged and convert it with llama.cpp's convert_hf_to_gguf.py"
    )


def _write_base_gguf(source: MethodSource, quant, build, tokenizer, given, files, log) -> dict:
    """A recipe's base model as GGUF: the weights the run measured (the embedded model is a
    Q4_1 file, run in process from its dequantized copy; llama.cpp on the Q4_1 file itself
    answers otherwise on close rows), so a served recipe can answer as measured."""
    from transformers import AutoConfig

    config_folder = Path(source.base.checkpoint())
    config = AutoConfig.from_pretrained(str(config_folder))
    gguf_file.check_llama(config, str(config_folder))
    meta = _tokenizer_metadata(source, tokenizer, given)
    log(f"writing base-{quant}.gguf")
    path = build / f"base-{quant}.gguf"
    written = gguf_file.write_model_gguf(
        path, config, gguf_file.checkpoint_tensors(config_folder), quant, meta, tokenizer,
        None if meta.general else source.base.name, where=str(config_folder),
    )  # fmt: skip
    files["base_gguf"] = path.name
    info: dict = {"tokenizer_from": str(meta.source), "bytes": {path.name: written.bytes}}
    if written.fallbacks:
        info["fallbacks"] = {path.name: _grouped(written.fallbacks)}
    return info


def _write_gguf(source: MethodSource, quant, build, tokenizer, given, files, log) -> dict:
    from transformers import AutoConfig

    trained = source.trained_method
    weights = source.model_folder()
    config_folder = weights if trained == "full-ft" else Path(source.base.checkpoint())
    config = AutoConfig.from_pretrained(str(config_folder))
    gguf_file.check_llama(config, str(config_folder))
    meta = _tokenizer_metadata(source, tokenizer, given)
    label = f"{source.base.name} {source.name} ({source.results['task']['name']})"
    written = []

    def model(role: str, tensors, name: str | None) -> None:
        log(f"writing {role}-{quant}.gguf")
        path = build / f"{role}-{quant}.gguf"
        written.append(
            gguf_file.write_model_gguf(
                path, config, tensors, quant, meta, tokenizer, name, where=str(config_folder)
            )
        )
        files[f"{role}_gguf"] = path.name

    adapter_quant = ADAPTER_QUANT.get(quant, quant)
    if trained in ("lora", "qlora"):
        base_tensors = gguf_file.checkpoint_tensors(config_folder)
        model("base", base_tensors, None if meta.general else source.base.name)
        log(f"writing adapter-{adapter_quant}.gguf")
        path = build / f"adapter-{adapter_quant}.gguf"
        written.append(
            gguf_file.write_lora_gguf(
                path, weights, config, adapter_quant, f"{label} adapter", meta, str(weights)
            )
        )
        files["adapter_gguf"] = path.name
        model("merged", _merged_tensors(source, config_folder, weights), label)
    else:
        model("merged", gguf_file.checkpoint_tensors(weights), label)
    info: dict = {
        "tokenizer_from": str(meta.source),
        "bytes": {w.path.name: w.bytes for w in written},
        "fallbacks": {w.path.name: _grouped(w.fallbacks) for w in written if w.fallbacks},
    }
    if trained in ("lora", "qlora"):
        lora = gguf_file.lora_settings(weights)
        info["adapter_quant"] = adapter_quant
        info["lora"] = {"rank": lora.rank, "alpha": lora.alpha, "peft_alpha": lora.peft_alpha}
    return info


def _grouped(fallbacks: dict[str, str]) -> dict[str, dict[str, int]]:
    """{why: {tensor name with its block number as *: how many}}, for export.json."""
    import re

    out: dict[str, dict[str, int]] = {}
    for name, why in fallbacks.items():
        pattern = re.sub(r"^blk\.\d+\.", "blk.*.", name)
        out.setdefault(why, {})
        out[why][pattern] = out[why].get(pattern, 0) + 1
    return out


def _merged_tensors(source: MethodSource, checkpoint: str, adapter: Path):
    """The LoRA-merged weights: the run's merged/ folder, else the adapter merged here (peft's
    merge_and_unload on a float32 copy of the base)."""
    merged = source.artefact("merged")
    if merged is not None:
        return gguf_file.checkpoint_tensors(merged)
    import torch
    from transformers import AutoModelForCausalLM

    from finetune.adapters import load_adapter

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    merged_model = load_adapter(model, adapter).merge_and_unload()
    return gguf_file.state_dict_tensors(merged_model.state_dict())


# --- vLLM -----------------------------------------------------------------------------------


def _write_vllm(source: MethodSource, build: Path, files: dict, log) -> dict:
    weights = source.model_folder()
    if source.trained_method == "full-ft":
        files["merged"] = _copy(weights, build, "merged")
        rank = None
    else:
        files["adapter"] = _copy(weights, build, "adapter")
        rank = gguf_file.lora_settings(weights).rank
        if source.base.source in ("embedded-gguf", "gguf-file"):  # vLLM needs a transformers base
            log("copying the base model (converted from its GGUF) for vLLM")
            files["base"] = _copy(Path(source.base.checkpoint()), build, "base")
    name = _served_name(source)
    command = serving.vllm(files, source.base.reference, source.base.gguf, name, rank)
    _write_text(build / VLLM_SCRIPT, f"#!/bin/sh\n# run in this folder\n{command}\n")
    os.chmod(build / VLLM_SCRIPT, 0o755)
    files["vllm_command"] = VLLM_SCRIPT
    return {"command": command, "lora_rank": rank}


# --- recipes --------------------------------------------------------------------------------


def _write_recipe(source, task, system, tokenizer, build: Path, files: dict, log) -> dict:
    import numpy as np

    from experiments.embeddings import Embedder, QuestionEncoder

    spec = recipe_spec(source, task, system)
    _write_text(build / RECIPE, json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    files["recipe"] = RECIPE
    lines = [json.dumps(row_record(r), ensure_ascii=False) for r in task.train]
    _write_text(build / POOL, "\n".join(lines) + "\n")
    files["pool"] = POOL
    tokenizer.save_pretrained(str(build / TOKENIZER))
    files["tokenizer"] = f"{TOKENIZER}/"
    embedder = Embedder(spec["embedder"])
    if uses_question_vectors(source.method):
        log("embedding the example pool's questions")
        vectors = QuestionEncoder(embedder).encode([r.text for r in task.train])
        np.save(build / POOL_VECTORS, vectors, allow_pickle=False)
        files["pool_vectors"] = POOL_VECTORS
    if spec.get("rag") is not None:
        _write_index(task, spec, embedder, build / INDEX, log)
        files["index"] = f"{INDEX}/"
    if source.family == "hybrid":
        kind = "model" if source.trained_method == "full-ft" else "adapter"
        files[kind] = _copy(source.model_folder(), build, kind)
    log("checking that the recipe rebuilds the run's prompts")
    return {"verified_rows": _verify(load_recipe(build), source, task)}


def _write_index(task, spec: dict, embedder, target: Path, log) -> None:
    """The task's index as the run used it: its index.json and FAISS file, reloaded here (or,
    if they no longer match the corpus, built again here) with the run's settings."""
    from rag.settings import RagSettings, index_location, rag_settings
    from rag.store import META, open_index

    settings = RagSettings(**spec["rag"])
    found = index_location(task, rag_settings(task))
    target.mkdir()
    try:
        meta = json.loads((found / META).read_text(encoding="utf-8"))
        faiss_file = plain_name(meta.get("faiss_file"), "index-", ".faiss")
        if faiss_file and (found / faiss_file).is_file():
            shutil.copy2(found / META, target / META)
            shutil.copy2(found / faiss_file, target / faiss_file)
    except (OSError, ValueError, AttributeError):
        pass
    _, stats = open_index(task, embedder, location=target, settings=settings)
    if stats.built:
        log(f"the task's index did not match its corpus; built it again ({stats.n_chunks} chunks)")
    shutil.rmtree(target / "embeddings", ignore_errors=True)  # the embedding cache: not shipped


def _verify(recipe, source: MethodSource, task) -> int:
    """Rebuild the run's prompts with the recipe; refuse a recipe that differs from the run."""
    recorded = {str(r["id"]): r.get("prompt") for r in source.predictions}
    rows = [r for r in task.eval if r.id in recorded]
    if not rows:
        raise AdaptwiseError(
            f"{source.run_dir}: predictions.jsonl holds no prompts of {source.name} for the "
            "task's eval rows; rerun the method"
        )
    prompts = recipe.prompts_for(rows)
    differ = [r.id for r, p in zip(rows, prompts) if p.text != recorded[r.id]]
    if differ:
        raise AdaptwiseError(
            f"{source.run_dir}: the recipe rebuilds {len(differ)} of the run's {len(rows)} "
            f"{source.name} prompts differently (first: row {differ[0]}); the task, its corpus "
            "or the model changed since the run: rerun the method, then export it"
        )
    return len(rows)
