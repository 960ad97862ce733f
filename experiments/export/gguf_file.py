"""Write a Llama-family model, or a PEFT LoRA adapter, as a GGUF file llama.cpp loads.

Written with the `gguf` package's GGUFWriter (gguf-py, the library llama.cpp's own converters
use); the rules are llama.cpp's, read from its `convert_hf_to_gguf.py` (conversion/llama.py,
conversion/base.py) and `convert_lora_to_gguf.py`, whose code is not copied here:

- Tensor names come from gguf's TensorNameMap for MODEL_ARCH.LLAMA (`model.layers.0.self_attn.
  q_proj.weight` -> `blk.0.attn_q.weight`); a tied LM head writes no `output.weight`.
- The q and k projections (weights and biases) are permuted as `LlamaModel.permute` does, so
  that llama.cpp's RoPE (pairs of neighbouring dimensions) matches transformers' (halves).
- 1-D tensors and `*_norm.weight` stay F32. The other tensors take the requested type; a
  tensor whose rows (its last dimension) do not split into the type's blocks (32 values for
  Q8_0 and Q4_0) falls back to F16, as llama.cpp's converter falls back on a QuantError. The
  writer returns what fell back.
- A LoRA adapter is `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and
  per adapted weight `<name>.lora_a` (rank x in) and `<name>.lora_b` (out x rank), the q/k
  permutation applied to lora_b (its rows are the weight's rows). llama.cpp scales the product
  by alpha / rank, rank read from the tensors; rsLoRA's alpha / sqrt(rank) is written as
  alpha x sqrt(rank) so that the product is the same.

Tensors are written one at a time (header and tensor table first, then each tensor as it is
converted), so the memory a write needs is about one tensor, not the model.

The tokenizer is not rebuilt from transformers' files: llama.cpp needs its pre-tokenizer name,
which its converter finds from a table of hashes. It is copied from a GGUF of the same
tokenizer (the base's own GGUF, as for the embedded SmolLM2, or one the user names), after
checking that its tokens are the tokenizer's, token for token.

One file, past 450 lines, because the model writer and the adapter writer apply the same rules
(tensor names, the q/k permutation, tensor types and their fallback, the streaming writer): split
in two, each would import the other's private rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.errors import AdaptwiseError

QUANTS = ("f16", "bf16", "q8_0", "q4_0")
DEFAULT_QUANT = "f16"
ARCH = "llama"
SUPPORTED_MODEL_TYPES = ("llama",)
SUPPORTED_ROPE = ("default", "linear")
# Descriptive keys a GGUF base carries that an export of it keeps (its name, licence, ...).
GENERAL_KEYS = (
    "general.name",
    "general.organization",
    "general.finetune",
    "general.basename",
    "general.size_label",
    "general.license",
    "general.languages",
)


@dataclass(frozen=True)
class TensorSource:
    """One tensor of a transformers checkpoint: its name, shape, and how to read it."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]


@dataclass
class GGUFWritten:
    """What a write produced: the file, its tensor types, and the tensors that fell back."""

    path: Path
    types: dict[str, str] = field(default_factory=dict)  # gguf name -> GGML type name
    fallbacks: dict[str, str] = field(default_factory=dict)  # gguf name -> why
    bytes: int = 0


@dataclass(frozen=True)
class MetaValue:
    key: str
    value: object
    vtype: object  # gguf.GGUFValueType
    sub_type: object = None


@dataclass
class TokenizerMetadata:
    """tokenizer.* (and, from the base's own GGUF, general.*) key-values to write."""

    source: Path
    tokenizer: list[MetaValue]
    general: list[MetaValue]


# --- checks ---------------------------------------------------------------------------------


def check_llama(config, where: str) -> None:
    """One line for a model llama.cpp's Llama graph cannot run as written here."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise AdaptwiseError(
            f"{where}: GGUF export supports the Llama family (model_type llama); this model "
            f"is {model_type!r}: export --format merged and convert it with llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    rope = _rope(config)
    if rope.get("rope_type", "default") not in SUPPORTED_ROPE:
        raise AdaptwiseError(
            f"{where}: GGUF export supports default and linear RoPE; this model uses "
            f"{rope.get('rope_type')!r} scaling: export --format merged and convert it with "
            "llama.cpp's convert_hf_to_gguf.py"
        )


def _rope(config) -> dict:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    rope = dict(rope or {})
    rope.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    if rope.get("rope_type") is None and rope.get("type") is not None:
        rope["rope_type"] = rope["type"]
    return rope


# --- the tokenizer's metadata ---------------------------------------------------------------


def read_tokenizer_metadata(gguf_path: Path, with_general: bool) -> TokenizerMetadata:
    """The tokenizer.* key-values of a GGUF file (strings and string arrays byte for byte),
    and its descriptive general.* keys when `with_general`."""
    import gguf

    try:
        reader = gguf.GGUFReader(gguf_path)
    except (OSError, ValueError) as exc:
        raise AdaptwiseError(f"{gguf_path}: not a readable GGUF file ({exc})") from None
    tokenizer, general = [], []
    for key, f in reader.fields.items():
        wanted = key.startswith("tokenizer.") or (with_general and key in GENERAL_KEYS)
        if not wanted or not f.types:
            continue
        value = _field_value(f)
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        meta = MetaValue(key, value, f.types[0], sub)
        (tokenizer if key.startswith("tokenizer.") else general).append(meta)
    if not any(m.key == "tokenizer.ggml.tokens" for m in tokenizer):
        raise AdaptwiseError(f"{gguf_path}: the GGUF file holds no tokenizer (tokenizer.ggml.*)")
    return TokenizerMetadata(Path(gguf_path), tokenizer, general)


def _field_value(f):
    import gguf

    main = f.types[0]
    if main == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]])
    if main == gguf.GGUFValueType.ARRAY and f.types[-1] == gguf.GGUFValueType.STRING:
        return [bytes(f.parts[i]) for i in f.data]
    return f.contents()


def tokens_of(meta: TokenizerMetadata) -> list[str]:
    tokens = next(m for m in meta.tokenizer if m.key == "tokenizer.ggml.tokens").value
    return [t.decode("utf-8", errors="replace") for t in tokens]


def matches_tokenizer(meta: TokenizerMetadata, tokenizer) -> bool:
    """Whether the GGUF's tokens are the transformers tokenizer's, id for id."""
    tokens = tokens_of(meta)
    vocab = tokenizer.get_vocab()
    if len(vocab) != len(tokens):
        return False
    return all(vocab.get(token) == i for i, token in enumerate(tokens))


def _with_tokenizer_overrides(meta: TokenizerMetadata, tokenizer) -> list[MetaValue]:
    """The GGUF's tokenizer keys, with the chat template and special token ids that the run's
    tokenizer has (they decide the prompts and where an answer stops)."""
    import gguf

    values = {m.key: m for m in meta.tokenizer}
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        values["tokenizer.chat_template"] = MetaValue(
            "tokenizer.chat_template", template.encode("utf-8"), gguf.GGUFValueType.STRING
        )
    for role in ("bos", "eos", "unknown", "padding"):
        attr = {"unknown": "unk", "padding": "pad"}.get(role, role)
        token_id = getattr(tokenizer, f"{attr}_token_id", None)
        if isinstance(token_id, int) and token_id >= 0:
            key = f"tokenizer.ggml.{role}_token_id"
            values[key] = MetaValue(key, token_id, gguf.GGUFValueType.UINT32)
    return list(values.values())


# --- tensors --------------------------------------------------------------------------------


def permute_qk(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: within each head, interleave the two rotary halves."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return (
        weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
        .swapaxes(1, 2)
        .reshape(shape)
    )


def _heads(config) -> tuple[int, int]:
    n_head = config.num_attention_heads
    return n_head, getattr(config, "num_key_value_heads", None) or n_head


def _permutation(hf_name: str, config) -> Callable[[np.ndarray], np.ndarray] | None:
    n_head, n_kv = _heads(config)
    if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return lambda w: permute_qk(w, n_head, n_head)
    if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return lambda w: permute_qk(w, n_head, n_kv)
    return None


def gguf_name(hf_name: str, n_blocks: int, where: str) -> str:
    import gguf

    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    name = mapping.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise AdaptwiseError(
            f"{where}: tensor {hf_name!r} has no place in llama.cpp's Llama graph; export "
            "--format merged and convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    return name


def tensor_type(name: str, shape: tuple[int, ...], quant: str):
    """(GGML type, fallback reason or None) for a tensor named `name` (GGUF) in `quant`."""
    import gguf

    qtypes = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "bf16": gguf.GGMLQuantizationType.BF16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q4_0": gguf.GGMLQuantizationType.Q4_0,
    }
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32, None
    qtype = qtypes[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        reason = f"rows of {shape[-1]} values do not split into {qtype.name} blocks of {block}"
        return gguf.GGMLQuantizationType.F16, reason
    return qtype, None


def _encode(data: np.ndarray, qtype) -> np.ndarray:
    import gguf

    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)


def _nbytes(shape: tuple[int, ...], qtype) -> int:
    import gguf

    return int(np.prod(gguf.quant_shape_to_byte_shape(shape, qtype)))


def _file_type(quant: str):
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[quant]


@dataclass
class _Planned:
    name: str
    shape: tuple[int, ...]
    qtype: object
    load: Callable[[], np.ndarray]


def _write(path: Path, kv: Iterable[MetaValue], planned: list[_Planned]) -> GGUFWritten:
    """Header, key-values and tensor table, then each tensor as it is converted."""
    import gguf

    writer = gguf.GGUFWriter(path, ARCH)
    for m in kv:
        writer.add_key_value(m.key, m.value, m.vtype, m.sub_type)
    for p in planned:
        nbytes = _nbytes(p.shape, p.qtype)
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), nbytes, p.qtype)
    written = GGUFWritten(Path(path))
    try:
        writer.write_header_to_file(Path(path))
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for p in planned:
            data = _encode(p.load(), p.qtype)
            writer.write_tensor_data(data)
            written.types[p.name] = p.qtype.name
    finally:
        writer.close()
    written.bytes = Path(path).stat().st_size
    return written


def _kv(key: str, value, vtype_name: str, sub: str | None = None) -> MetaValue:
    import gguf

    vtype = gguf.GGUFValueType[vtype_name]
    return MetaValue(key, value, vtype, gguf.GGUFValueType[sub] if sub else None)


def _string(key: str, text: str) -> MetaValue:
    return _kv(key, text.encode("utf-8"), "STRING")


def _general(meta: TokenizerMetadata | None, name: str | None, kind: str, quant: str) -> list:
    import gguf

    values = {m.key: m for m in (meta.general if meta else [])}
    if name:
        values["general.name"] = _string("general.name", name)
    values["general.type"] = _string("general.type", kind)
    out = list(values.values())
    out.append(_kv("general.file_type", int(_file_type(quant)), "UINT32"))
    out.append(_kv("general.quantization_version", gguf.GGML_QUANT_VERSION, "UINT32"))
    return out


def _hyper_parameters(config) -> list[MetaValue]:
    """llama.* key-values, as llama.cpp's TextModel and LlamaModel write them."""
    n_head, n_kv = _heads(config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = _rope(config)
    out = [
        _kv(f"{ARCH}.block_count", config.num_hidden_layers, "UINT32"),
        _kv(f"{ARCH}.context_length", config.max_position_embeddings, "UINT32"),
        _kv(f"{ARCH}.embedding_length", config.hidden_size, "UINT32"),
        _kv(f"{ARCH}.feed_forward_length", config.intermediate_size, "UINT32"),
        _kv(f"{ARCH}.attention.head_count", n_head, "UINT32"),
        _kv(f"{ARCH}.attention.head_count_kv", n_kv, "UINT32"),
        _kv(f"{ARCH}.rope.freq_base", float(rope["rope_theta"]), "FLOAT32"),
        _kv(f"{ARCH}.attention.layer_norm_rms_epsilon", float(config.rms_norm_eps), "FLOAT32"),
        _kv(f"{ARCH}.vocab_size", config.vocab_size, "UINT32"),
        _kv(f"{ARCH}.rope.dimension_count", head_dim, "UINT32"),
    ]
    if getattr(config, "head_dim", None) is not None:
        out.append(_kv(f"{ARCH}.attention.key_length", head_dim, "UINT32"))
        out.append(_kv(f"{ARCH}.attention.value_length", head_dim, "UINT32"))
    if rope.get("rope_type") == "linear" and rope.get("factor"):
        out.append(_string(f"{ARCH}.rope.scaling.type", "linear"))
        out.append(_kv(f"{ARCH}.rope.scaling.factor", float(rope["factor"]), "FLOAT32"))
    return out


def write_model_gguf(
    path: Path,
    config,
    tensors: list[TensorSource],
    quant: str,
    tokenizer_meta: TokenizerMetadata,
    tokenizer,
    name: str | None = None,
    where: str = "model",
) -> GGUFWritten:
    """A transformers Llama checkpoint (`tensors`, its `config`) as a GGUF model file."""
    check_llama(config, where)
    if config.vocab_size != len(tokens_of(tokenizer_meta)):
        raise AdaptwiseError(
            f"{where}: the model has {config.vocab_size} token embeddings and its tokenizer "
            f"{len(tokens_of(tokenizer_meta))} tokens; llama.cpp needs them equal: export "
            "--format merged and convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    tied = bool(getattr(config, "tie_word_embeddings", False))
    planned, fallbacks = [], {}
    for t in tensors:
        if t.name.endswith("rotary_emb.inv_freq") or (tied and t.name == "lm_head.weight"):
            continue
        target = gguf_name(t.name, config.num_hidden_layers, where)
        qtype, reason = tensor_type(target, t.shape, quant)
        if reason:
            fallbacks[target] = f"F16: {reason}"
        planned.append(_Planned(target, t.shape, qtype, _converted(t, config)))
    kv = [
        *_general(tokenizer_meta if tokenizer_meta.general else None, name, "model", quant),
        *_hyper_parameters(config),
        *_with_tokenizer_overrides(tokenizer_meta, tokenizer),
    ]
    written = _write(path, kv, planned)
    written.fallbacks = fallbacks
    return written


def _converted(t: TensorSource, config) -> Callable[[], np.ndarray]:
    permute = _permutation(t.name, config)

    def load() -> np.ndarray:
        data = np.asarray(t.load(), dtype=np.float32)
        return permute(data) if permute else data

    return load


# --- LoRA adapters --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float  # as written for llama.cpp (rsLoRA folded in)
    peft_alpha: float
    rslora: bool


def lora_settings(adapter_dir: Path) -> LoraSettings:
    """The adapter's rank and alpha; one line for what llama.cpp's LoRA cannot express."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdaptwiseError(f"{path}: unreadable adapter config ({exc})") from None
    refuse = None
    if config.get("peft_type", "LORA") != "LORA":
        refuse = f"it is a {config.get('peft_type')} adapter, not LoRA"
    elif config.get("use_dora"):
        refuse = "DoRA adapters have no llama.cpp LoRA form"
    elif config.get("modules_to_save"):
        refuse = f"it saves whole modules ({', '.join(config['modules_to_save'])})"
    elif config.get("alpha_pattern") or config.get("rank_pattern"):
        refuse = "its rank or alpha differs per module (llama.cpp has one alpha per file)"
    elif config.get("bias", "none") != "none":
        refuse = "it trains biases"
    elif config.get("fan_in_fan_out"):
        refuse = "it wraps Conv1D layers (fan_in_fan_out)"
    if refuse:
        raise AdaptwiseError(
            f"{path}: this adapter cannot be written as a llama.cpp LoRA: {refuse}; export "
            "--format merged instead"
        )
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    rslora = bool(config.get("use_rslora"))
    gguf_alpha = alpha * math.sqrt(rank) if rslora else alpha
    return LoraSettings(rank=rank, alpha=gguf_alpha, peft_alpha=alpha, rslora=rslora)


def lora_pairs(adapter_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{base weight name: (A, B)} from adapter_model.safetensors (float32, PEFT's layout)."""
    from safetensors import safe_open

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise AdaptwiseError(
            f"{adapter_dir}: no adapter_model.safetensors; the adapter has no weights"
        )
    pairs: dict[str, dict[str, np.ndarray]] = {}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            base = key.replace("base_model.model.", "", 1)
            for part, tag in ((".lora_A.weight", "A"), (".lora_B.weight", "B")):
                if base.endswith(part):
                    weight = base[: -len(part)] + ".weight"
                    tensor = handle.get_tensor(key).float().numpy()
                    pairs.setdefault(weight, {})[tag] = tensor
                    break
            else:
                raise AdaptwiseError(
                    f"{path}: tensor {key!r} is not a LoRA A or B matrix; llama.cpp's LoRA "
                    "cannot hold it: export --format merged instead"
                )
    incomplete = [name for name, p in pairs.items() if set(p) != {"A", "B"}]
    if incomplete:
        raise AdaptwiseError(
            f"{path}: {incomplete[0]} has an A or B matrix alone (a damaged adapter)"
        )
    return {name: (p["A"], p["B"]) for name, p in pairs.items()}


def write_lora_gguf(
    path: Path,
    adapter_dir: Path,
    config,
    quant: str,
    name: str | None = None,
    general: TokenizerMetadata | None = None,
    where: str = "adapter",
) -> GGUFWritten:
    """A PEFT LoRA adapter as a llama.cpp LoRA GGUF (applied with `llama-server --lora`)."""
    check_llama(config, where)
    settings = lora_settings(adapter_dir)
    pairs = lora_pairs(adapter_dir)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    planned, fallbacks = [], {}
    for hf_name, (a, b) in pairs.items():
        if tied and hf_name == "lm_head.weight":
            raise AdaptwiseError(
                f"{adapter_dir}: the adapter trains the LM head, which this model ties to the "
                "embeddings; llama.cpp ignores it: export --format merged instead"
            )
        if "embed_tokens" in hf_name:
            raise AdaptwiseError(
                f"{adapter_dir}: the adapter trains the token embeddings; export --format "
                "merged instead"
            )
        target = gguf_name(hf_name, config.num_hidden_layers, where)
        permute = _permutation(hf_name, config)
        for suffix, data in ((".lora_a", a), (".lora_b", permute(b) if permute else b)):
            qtype, reason = tensor_type(target + suffix, data.shape, quant)
            if reason:
                fallbacks[target + suffix] = f"F16: {reason}"
            planned.append(_Planned(target + suffix, data.shape, qtype, lambda d=data: d))
    kv = [
        *_general(general, name, "adapter", quant),
        _string("adapter.type", "lora"),
        _kv("adapter.lora.alpha", settings.alpha, "FLOAT32"),
    ]
    written = _write(path, kv, planned)
    written.fallbacks = fallbacks
    return written


# --- reading checkpoints --------------------------------------------------------------------


def checkpoint_tensors(folder: Path) -> list[TensorSource]:
    """Every tensor of a safetensors checkpoint folder (one file or an index of shards), read
    one at a time when written."""
    from safetensors import safe_open

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise AdaptwiseError(
            f"{folder}: no .safetensors weights (a pickle checkpoint is not read); save the model "
            "as safetensors"
        )
    out = []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                shape = tuple(handle.get_slice(key).get_shape())
                out.append(TensorSource(key, shape, _reader(file, key)))
    return out


def _reader(file: Path, key: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return handle.get_tensor(key).float().numpy()

    return load


def state_dict_tensors(state: dict) -> list[TensorSource]:
    """A model's state dict (in memory) as tensor sources."""
    return [
        TensorSource(name, tuple(t.shape), lambda t=t: t.detach().float().cpu().numpy())
        for name, t in state.items()
    ]
