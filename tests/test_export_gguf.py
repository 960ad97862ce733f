"""The GGUF writer (experiments/export/gguf_file.py) on a tiny random Llama with the embedded
model's tokenizer: write it, read it back with gguf's GGUFReader (names, shapes, types,
metadata) and with transformers' GGUF loader, and compare the logits with the original model's.
The LoRA adapter GGUF is checked against peft: B @ A x alpha / r, permuted like llama.cpp
permutes q and k, is the merged model's weight minus the base's.

Tolerances (max |logit difference| / max |logit| on one 12-token prompt; measured 3e-4 for
f16, 3e-3 for bf16, 9e-3 for q8_0 and 0.15 for q4_0 on this model): f16 2e-3, bf16 1e-2,
q8_0 3e-2, q4_0 0.3.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from experiments.errors import AdaptwiseError
from experiments.export import gguf_file

TOLERANCE = {"f16": 2e-3, "bf16": 1e-2, "q8_0": 3e-2, "q4_0": 0.3}
QTYPE = {"f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0"}


@pytest.fixture(scope="module")
def meta():
    from experiments.models import embedded_gguf_path

    return gguf_file.read_tokenizer_metadata(embedded_gguf_path(), with_general=False)


@pytest.fixture(scope="module")
def tiny(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return SimpleNamespace(
        folder=tiny_model, model=model, tok=AutoTokenizer.from_pretrained(tiny_model)
    )


def logits(model, tok):
    import torch

    ids = torch.tensor([tok("Hello there, how are you doing today?")["input_ids"]])
    with torch.no_grad():
        return model(ids).logits[0].float().numpy()


def load_gguf(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.to(torch.float32).eval()


def field(reader, key):
    return reader.fields[key].contents()


def tensors(reader) -> dict:
    import gguf

    return {
        t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape)))
        for t in reader.tensors
    }


@pytest.mark.parametrize("quant", ["f16", "q8_0", "bf16", "q4_0"])
def test_model_round_trip(tiny, meta, tmp_path, quant):
    import gguf

    path = tmp_path / f"tiny-{quant}.gguf"
    written = gguf_file.write_model_gguf(
        path,
        tiny.model.config,
        gguf_file.checkpoint_tensors(tiny.folder),
        quant,
        meta,
        tiny.tok,
        name="tiny",
    )
    assert written.fallbacks == {}  # every row of this model splits into blocks of 32
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.type") == "model"
    assert field(reader, "general.name") == "tiny"
    assert field(reader, "llama.block_count") == 2
    assert field(reader, "llama.embedding_length") == 32
    assert field(reader, "llama.attention.head_count") == 4
    assert field(reader, "llama.attention.head_count_kv") == 2
    assert field(reader, "llama.context_length") == 512
    assert field(reader, "tokenizer.chat_template") == tiny.tok.chat_template
    assert field(reader, "tokenizer.ggml.eos_token_id") == tiny.tok.eos_token_id
    assert field(reader, "tokenizer.ggml.bos_token_id") == tiny.tok.bos_token_id
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == len(tiny.tok)
    by_name = {t.name: t for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{part}.weight"
        for i in range(2)
        for part in (
            "attn_norm",
            "ffn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        )
    }
    assert set(by_name) == expected  # tied embeddings: no output.weight
    state = tiny.model.state_dict()
    assert list(by_name["blk.0.attn_k.weight"].shape) == [32, 16]  # ne order: (in, out)
    assert list(by_name["blk.0.ffn_down.weight"].shape) == [64, 32]
    for name, t in by_name.items():
        want = "F32" if name.endswith("_norm.weight") else QTYPE[quant]
        assert t.tensor_type.name == want, name
    # q and k are stored permuted as llama.cpp's LlamaModel.permute does
    q = tensors(reader)["blk.1.attn_q.weight"]
    original = state["model.layers.1.self_attn.q_proj.weight"].numpy()
    if quant == "f16":
        assert np.allclose(q, gguf_file.permute_qk(original, 4, 4), atol=1e-3)
        assert not np.allclose(q, original, atol=1e-3)
    # transformers' GGUF loader undoes the permutation: the logits are the original model's
    got = logits(load_gguf(path), tiny.tok)
    want = logits(tiny.model, tiny.tok)
    assert np.abs(got - want).max() / np.abs(want).max() <= TOLERANCE[quant]


def test_rows_that_do_not_split_into_blocks_fall_back_to_f16(tiny, meta, tmp_path):
    """hidden 40: every tensor whose rows hold 40 values stays F16 in a q8_0 file, and says so."""
    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tiny.tok),
        hidden_size=40,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path / "odd"
    model.save_pretrained(folder)
    path = tmp_path / "odd-q8_0.gguf"
    written = gguf_file.write_model_gguf(
        path, config, gguf_file.checkpoint_tensors(folder), "q8_0", meta, tiny.tok
    )
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # rows of 64
    assert types["output.weight"] == "F16"  # untied: the head is written, rows of 40
    for name in ("token_embd", "blk.0.attn_q", "blk.0.attn_output", "blk.0.ffn_up"):
        assert types[f"{name}.weight"] == "F16"
        assert "do not split into Q8_0 blocks of 32" in written.fallbacks[f"{name}.weight"]
    assert "blk.0.ffn_down.weight" not in written.fallbacks
    got, want = logits(load_gguf(path), tiny.tok), logits(model, tiny.tok)
    assert np.abs(got - want).max() / np.abs(want).max() <= TOLERANCE["q8_0"]


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_adapter_reproduces_the_peft_delta(tiny, tmp_path, rslora):
    import gguf
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny.folder, dtype=torch.float32)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    torch.manual_seed(2)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, use_rslora=rslora
    )
    peft_model = get_peft_model(base, lora)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    path = tmp_path / "adapter-f16.gguf"
    written = gguf_file.write_lora_gguf(path, adapter, base.config, "f16", name="tiny adapter")
    merged = peft_model.merge_and_unload().state_dict()

    reader = gguf.GGUFReader(path)
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.type") == "adapter"
    assert field(reader, "adapter.type") == "lora"
    alpha = field(reader, "adapter.lora.alpha")
    assert alpha == pytest.approx(8 * 2 if rslora else 8)  # rsLoRA: alpha x sqrt(r)
    got = tensors(reader)
    pairs = [n[: -len(".lora_a")] for n in got if n.endswith(".lora_a")]
    assert len(pairs) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    # lora_b's rows (r=4 values) do not split into blocks: F16 there is no fallback in f16
    assert written.fallbacks == {}
    hf = {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    for name in pairs:
        block, part = name.split(".")[1], name.split(".")[2]
        a, b = got[f"{name}.lora_a"], got[f"{name}.lora_b"]
        assert a.shape[0] == 4 and b.shape[1] == 4
        rank = a.shape[0]  # llama.cpp reads the rank from the tensors
        delta = b @ a * alpha / rank
        key = f"model.layers.{block}.{hf[part]}.weight"
        want = (merged[key] - base_state[key]).numpy()
        if part == "attn_q":
            want = gguf_file.permute_qk(want, 4, 4)
        elif part == "attn_k":
            want = gguf_file.permute_qk(want, 4, 2)
        scale = np.abs(want).max()
        assert np.abs(delta - want).max() <= 2e-3 * scale, name


def test_q8_0_adapter_keeps_rank_rows_in_f16(tiny, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny.folder, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    written = gguf_file.write_lora_gguf(
        tmp_path / "a.gguf", tmp_path / "adapter", base.config, "q8_0"
    )
    assert written.types["blk.0.attn_q.weight.lora_a"] == "Q8_0"  # rows of 32 (the input)
    assert written.types["blk.0.attn_q.weight.lora_b"] == "F16"  # rows of 4 (the rank)
    assert "blk.0.attn_q.weight.lora_b" in written.fallbacks


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (SimpleNamespace(model_type="qwen2"), "is 'qwen2'"),
        (
            SimpleNamespace(model_type="llama", rope_parameters={"rope_type": "llama3"}),
            "'llama3' scaling",
        ),
    ],
)
def test_other_architectures_are_refused_in_one_line(config, words):
    with pytest.raises(AdaptwiseError) as err:
        gguf_file.check_llama(config, "somewhere")
    text = str(err.value)
    assert "\n" not in text and words in text and "convert_hf_to_gguf.py" in text


def test_adapters_llama_cpp_cannot_hold_are_refused(tmp_path):
    import json

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": True})
    )
    with pytest.raises(AdaptwiseError, match="DoRA"):
        gguf_file.lora_settings(adapter)
