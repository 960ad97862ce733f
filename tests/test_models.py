"""Resolving --model: the embedded GGUF (converted once), a local folder, bad paths."""

from pathlib import Path

import pytest

from experiments.errors import SetupError
from experiments.models import embedded_gguf_path, load_language_model, resolve_checkpoint


def test_embedded_model_is_found_and_converted_to_a_plain_checkpoint():
    gguf = embedded_gguf_path()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50e6
    checkpoint, name = resolve_checkpoint(None)
    assert name == "SmolLM2-135M-Instruct"
    config = (Path(checkpoint) / "config.json").read_text()
    assert "quantization_config" not in config  # trainable, saveable float32 weights
    assert (Path(checkpoint) / "model.safetensors").is_file()


def test_local_folder_loads_and_generates():
    checkpoint, _ = resolve_checkpoint(None)
    lm = load_language_model(checkpoint)
    assert lm.path is not None and lm.name == lm.path.name
    assert not lm.model.training
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    out = lm.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.gguf", "GGUF file not found"),
        (lambda p: p, "not a transformers model folder"),
        (
            lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt",
            "expected a model folder",
        ),
    ],
)
def test_bad_model_paths_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(SetupError, match=message):
        resolve_checkpoint(str(make(tmp_path)))


def test_thread_policy_uses_physical_cores_unless_told(monkeypatch):
    from experiments import threads

    for name in ("ADAPTWISE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "physical_cores", lambda: 3)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert threads.thread_count() == 3  # not the 6 logical CPUs
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.thread_count() == 2
    monkeypatch.setenv("ADAPTWISE_THREADS", "1")
    assert threads.thread_count() == 1
