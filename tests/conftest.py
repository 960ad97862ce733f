"""Set-up every test shares: the process offline, a network guard, and the tiny model."""

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

from experiments.startup import start_process

NETGUARD = Path(__file__).resolve().parent / "netguard"

start_process()  # as the CLI does first: no hub, no hub kernels (experiments/offline.py)


def _install_network_guard(log: Path) -> None:
    """Refuse and log every name lookup and connection outside 127.0.0.1, in this process and
    in every Python process a test starts (tests/netguard/sitecustomize.py)."""
    os.environ["ADAPTWISE_NETGUARD_LOG"] = str(log)
    parts = [str(NETGUARD), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    spec = importlib.util.spec_from_file_location("_netguard", NETGUARD / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def pytest_configure(config):
    handle, name = tempfile.mkstemp(prefix="adaptwise-network-guard-", suffix=".log")
    os.close(handle)
    _install_network_guard(Path(name))
    config.addinivalue_line(
        "markers", "reaches_network: the test looks up a host outside 127.0.0.1 on purpose"
    )


@pytest.fixture(autouse=True)
def _no_network(request):
    """A test fails when it, or a process it started, reached for a host outside 127.0.0.1."""
    log = Path(os.environ["ADAPTWISE_NETGUARD_LOG"])
    before = log.stat().st_size
    yield
    with log.open(encoding="utf-8") as handle:
        handle.seek(before)
        reached = handle.read()
    if reached and request.node.get_closest_marker("reaches_network") is None:
        pytest.fail(f"reached the network (tests/netguard):\n{reached[:4000]}", pytrace=False)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A folder holding `run`: one real run of the support demo's first 20 eval rows with
    zero-shot, few-shot-embedding and a 16-step LoRA (no forgetting probe: CI time), shared by the tests that ship it
    (test_ship.py) and apply it to new rows (test_predict.py): trained once for both, to keep
    CI under 30 minutes. Tests write next to `run` and may add files to it (verify.json), never
    change its methods' results or predictions."""
    from adaptwise.cli import main

    folder = tmp_path_factory.mktemp("demo-run")
    task = Path(__file__).resolve().parent.parent / "demo" / "support-intents" / "task.yaml"
    args = [
        "run", task, "--methods", "zero-shot,few-shot-embedding,lora", "--limit", "20",
        "--finetune", "max_steps=16", "--finetune", "forgetting_probe=false",
        "--out", folder / "run",
    ]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random 2-layer Llama with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from experiments.models import resolve_checkpoint

    checkpoint, _ = resolve_checkpoint(None, progress=lambda _m: None)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
