"""Model shapes for the memory estimator: known architectures by name, or a config.json.

Pure Python (json only): naming a known architecture needs no download, and a local config.json
or model folder is read as plain JSON. A hub id is looked up only when a hub is reachable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import AdaptwiseError

# The seven projections of a Llama-style decoder layer.
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The projections LoRA adapts, by preset name (peft's "all-linear" and the common subsets).
LORA_TARGETS = {
    "all-linear": LINEAR_MODULES,
    "qv": ("q_proj", "v_proj"),
    "qkv": ("q_proj", "k_proj", "v_proj"),
}


def lora_target_names(targets: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The projections LoRA adapts: a preset's (LORA_TARGETS), or the module names given, as a
    task's `finetune: target_modules: [q_proj, v_proj]` gives them to peft."""
    if isinstance(targets, str):
        if targets not in LORA_TARGETS:
            raise AdaptwiseError(
                f"unknown lora targets {targets!r}: choose from {', '.join(LORA_TARGETS)} "
                "or a list of projection names"
            )
        return LORA_TARGETS[targets]
    names = tuple(dict.fromkeys(targets))
    unknown = [n for n in names if n not in LINEAR_MODULES]
    if not names or unknown:
        raise AdaptwiseError(
            f"lora targets {list(targets)!r}: the estimator knows the projections "
            f"{', '.join(LINEAR_MODULES)}"
        )
    return names


def estimator_targets(target_modules) -> str | tuple[str, ...]:
    """What the estimator takes for a fine-tuning config's target_modules: a preset or a tuple of
    known projection names; anything else (another architecture's names, a peft regex) counts
    all linear layers, the most LoRA could adapt, so the estimate errs high."""
    if isinstance(target_modules, str):
        return target_modules if target_modules in LORA_TARGETS else "all-linear"
    names = tuple(target_modules or ())
    known = names and all(n in LINEAR_MODULES for n in names)
    return tuple(dict.fromkeys(names)) if known else "all-linear"


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    tie_word_embeddings: bool
    head_dim: int | None = None  # None: hidden_size // num_heads
    attention_bias: bool = False  # q/k/v biases (Qwen2)

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_size

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_size

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection in one layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params_per_layer(self) -> int:
        return sum(a * b for a, b in self.linear_shapes().values())

    @property
    def small_params_per_layer(self) -> int:
        """Norm weights and biases: kept in 16 bits by QLoRA."""
        bias = self.q_dim + 2 * self.kv_dim if self.attention_bias else 0
        return 2 * self.hidden_size + bias

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder layers' projections (what QLoRA quantises)."""
        return self.num_layers * self.linear_params_per_layer

    @property
    def other_params(self) -> int:
        """Embeddings, lm_head, norms and biases (what QLoRA leaves in 16 bits)."""
        return (
            self.embedding_params
            + self.lm_head_params
            + self.num_layers * self.small_params_per_layer
            + self.hidden_size  # final norm
        )

    @property
    def total_params(self) -> int:
        return self.linear_params + self.other_params


def _shape(name, vocab, hidden, inter, layers, heads, kv, tied, bias=False) -> ModelShape:
    return ModelShape(name, vocab, hidden, inter, layers, heads, kv, tied, attention_bias=bias)


# Values from each model's published config.json on the Hugging Face hub.
KNOWN: dict[str, ModelShape] = {
    s.name: s
    for s in (
        _shape("llama-2-7b", 32000, 4096, 11008, 32, 32, 32, False),
        _shape("llama-2-13b", 32000, 5120, 13824, 40, 40, 40, False),
        _shape("llama-3-8b", 128256, 4096, 14336, 32, 32, 8, False),
        _shape("llama-3-70b", 128256, 8192, 28672, 80, 64, 8, False),
        _shape("llama-3.2-1b", 128256, 2048, 8192, 16, 32, 8, True),
        _shape("mistral-7b", 32000, 4096, 14336, 32, 32, 8, False),
        _shape("qwen2.5-0.5b", 151936, 896, 4864, 24, 14, 2, True, bias=True),
        _shape("qwen2.5-1.5b", 151936, 1536, 8960, 28, 12, 2, True, bias=True),
        _shape("qwen2.5-7b", 152064, 3584, 18944, 28, 28, 4, False, bias=True),
        _shape("smollm2-135m", 49152, 576, 1536, 30, 9, 3, True),
        _shape("smollm2-360m", 49152, 960, 2560, 32, 15, 5, True),
    )
}

# Suffixes that name a variant with the same shape ("-Instruct", "-chat-hf", "-v0.1").
_VARIANT = re.compile(r"(-(instruct|chat|hf|base|it|v0\.\d))+$")


def known_name(spec: str) -> str | None:
    """The KNOWN key for a name or hub id such as `meta-llama/Llama-2-7b-chat-hf`, or None."""
    name = spec.strip().lower().rsplit("/", 1)[-1]
    name = name.replace("meta-llama-3", "llama-3").replace("llama-3.1", "llama-3")
    if name in KNOWN:
        return name
    name = _VARIANT.sub("", name)
    return name if name in KNOWN else None


def shape_from_config(config: dict, name: str) -> ModelShape:
    """A ModelShape from a transformers config dict (llama, mistral, qwen2-style keys)."""
    if isinstance(config.get("text_config"), dict):  # multimodal wrappers keep the LM inside
        inner = dict(config["text_config"])
        if "tie_word_embeddings" in config:
            inner["tie_word_embeddings"] = config["tie_word_embeddings"]
        config = inner
    required = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    )
    missing = [key for key in required if not isinstance(config.get(key), int)]
    if missing:
        raise AdaptwiseError(f"{name}: config.json lacks {', '.join(missing)}")
    bad = [key for key in required if config[key] < 1]
    kv = config.get("num_key_value_heads")
    if kv is not None and (not isinstance(kv, int) or kv < 1):
        bad.append("num_key_value_heads")
    if bad:
        raise AdaptwiseError(
            f"{name}: config.json gives {bad[0]} {config.get(bad[0])!r}; it must be 1 or more"
        )
    heads = config["num_attention_heads"]
    model_type = str(config.get("model_type", ""))
    return ModelShape(
        name=name,
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=config.get("num_key_value_heads") or heads,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=config.get("head_dim") or None,
        attention_bias=bool(config.get("attention_bias", model_type.startswith("qwen2"))),
    )


def read_config(path: Path, name: str) -> ModelShape:
    """Read a config.json file (or a folder holding one)."""
    file = path / "config.json" if path.is_dir() else path
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdaptwiseError(f"{path}: no config.json there") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdaptwiseError(f"{file}: not a readable config.json ({exc})") from None
    if not isinstance(config, dict):
        raise AdaptwiseError(f"{file}: not a config.json (expected a JSON object)")
    return shape_from_config(config, name)


def resolve_shape(spec: str) -> ModelShape:
    """A known architecture name, a config.json or model folder, or a hub id (if reachable)."""
    if not spec or not spec.strip():
        raise AdaptwiseError("--model is empty; name an architecture, a config.json or a folder")
    name = known_name(spec)
    if name:
        return KNOWN[name]
    path = Path(spec).expanduser()
    if path.exists():
        return read_config(path, path.stem if path.is_file() else path.name)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return _from_hub(spec)
    raise AdaptwiseError(
        f"unknown model {spec!r}: name one of {', '.join(KNOWN)}, "
        "a config.json, a model folder or a hub id"
    )


def _from_hub(repo_id: str) -> ModelShape:
    def fail(reason: str) -> AdaptwiseError:
        return AdaptwiseError(
            f"could not fetch config.json of {repo_id} from the hub ({reason[:120]}); "
            f"pass a local config.json or one of: {', '.join(KNOWN)}"
        )

    from experiments.offline import allow_hub

    allow_hub()  # a hub id: the user asked for the hub
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:
        raise fail("huggingface_hub is not installed") from None
    if not constants.HF_HUB_OFFLINE and not _reachable(constants.ENDPOINT):
        # Fail at once rather than after the client's retries (about 30 s with no network).
        raise fail(f"{constants.ENDPOINT} is not reachable")
    hub_logging.set_verbosity_error()
    try:
        file = hf_hub_download(repo_id, "config.json")
    except Exception as exc:  # gated, missing, offline without a cached copy: one line each
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(reason) from None
    return read_config(Path(file), repo_id)


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
