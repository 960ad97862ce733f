"""A served model (`--model openai:NAME`) against a real OpenAI-compatible server on 127.0.0.1
(tests/api_server.py, the embedded model behind it), through the `openai` client: the same
scores as the in-process run on the same rows, costs from `usage`, a cache that makes no
request twice, one clear line for each broken setup, and an API key written nowhere."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from adaptwise.cli import main
from experiments.api_cache import ResponseCache
from experiments.api_scoring import map_to_label

ROOT = Path(__file__).resolve().parent.parent
INTENTS = ROOT / "demo" / "support-intents" / "task.yaml"
HELPDESK = ROOT / "demo" / "helpdesk-qa" / "task.yaml"
KEY = "sk-test-7f3a9c-never-written"


@pytest.fixture(scope="module")
def server():
    from api_server import ModelServer

    served = ModelServer(api_key=KEY)
    served.url = served.start()
    yield served
    served.stop()


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path, server):
    """The CLI in-process, from tmp_path, with the server's key and a private API cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ADAPTWISE_API_CACHE", str(tmp_path / "api-cache"))
    server.logprobs, server.props, server.fail_after = True, True, None
    server.structured = server.top_logprobs = False

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def api_args(server, *more):
    return ("--model", "openai:smollm2", "--base-url", server.url, *more)


def predictions(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def assert_same_scores(api: Path, local: Path) -> None:
    a, b = predictions(api), predictions(local)
    assert [(p["method"], p["id"]) for p in a] == [(p["method"], p["id"]) for p in b]
    for x, y in zip(a, b):
        assert x["prompt"] == y["prompt"]
        assert x["output"] == y["output"], (x["method"], x["id"])
        if "label_logprobs" in y:
            assert x["label_logprobs"] == pytest.approx(y["label_logprobs"], abs=2e-3)
    for name, entry in results(local)["methods"].items():
        assert results(api)["methods"][name]["metrics"] == entry["metrics"]


@pytest.mark.slow
def test_prompting_through_the_server_scores_as_in_process(cli, server, tmp_path):
    rows = 6  # each served row runs the model on every label: CI time
    methods = ("--methods", "zero-shot,few-shot-embedding-k2", "--limit", str(rows))
    prices = ("--prompt-token-price", "0.15", "--generated-token-price", "0.6")
    before = sum(server.counts.values())
    code, _, err = cli("run", INTENTS, *methods, *api_args(server, *prices), "--out", "api")
    assert code == 0, err
    assert sum(server.counts.values()) - before == 2 * rows  # one request per row and method
    assert cli("run", INTENTS, *methods, "--out", "local")[0] == 0
    assert_same_scores(tmp_path / "api", tmp_path / "local")

    entry = results(tmp_path / "api")["methods"]["zero-shot"]
    assert entry["scoring"] == "label log-likelihood (server prompt logprobs)"
    usage = entry["api"]
    assert usage["requests"] == rows and usage["cached"] == 0 and usage["usage_reported"]
    assert entry["prompt_tokens_mean"] == pytest.approx(usage["prompt_tokens"] / rows, abs=0.1)
    assert entry["latency"]["per"] == "request"
    report = (tmp_path / "api" / "report.md").read_text()
    # tokens x prices, no compute hours: mean tokens per query x price per 1k tokens
    per_1k = entry["prompt_tokens_mean"] * 0.15 + entry["generated_tokens_mean"] * 0.6
    assert (f"{per_1k:.4f}" if per_1k < 1 else f"{per_1k:,.2f}") in report

    # Again into another folder: every answer comes from the cache, the server is not asked.
    before = sum(server.counts.values())
    code, _, err = cli("run", INTENTS, *methods, *api_args(server), "--out", "again")
    assert code == 0, err
    assert sum(server.counts.values()) == before
    assert results(tmp_path / "again")["methods"]["zero-shot"]["api"]["cached"] == rows
    assert_same_scores(tmp_path / "again", tmp_path / "local")


@pytest.mark.slow
def test_rag_generation_through_the_server_scores_as_in_process(cli, server, tmp_path):
    methods = ("--methods", "rag", "--limit", "6")
    code, _, err = cli("run", HELPDESK, *methods, *api_args(server), "--out", "api")
    assert code == 0, err
    assert cli("run", HELPDESK, *methods, "--out", "local")[0] == 0
    assert_same_scores(tmp_path / "api", tmp_path / "local")
    entry = results(tmp_path / "api")["methods"]["rag"]
    assert entry["scoring"] == "greedy generation" and entry["api"]["completion_tokens"] > 0


@pytest.mark.slow
def test_a_failed_run_resumes_without_asking_again(cli, server, tmp_path):
    """The server fails after 5 answers (as a killed run stops): the method is recorded as
    failed with the server's line, and the rerun asks only for the rows not yet answered."""
    methods = ("--methods", "zero-shot", "--limit", "8", "--concurrency", "1")
    server.fail_after = sum(server.counts.values()) + 5
    start = len(server.prompts)
    code, _, err = cli("run", INTENTS, *methods, *api_args(server), "--out", "run")
    assert code == 1, err  # its one method failed: the run scored nothing
    assert "adaptwise: error: every method failed (zero-shot)" in err
    failed = results(tmp_path / "run")["failed"]["zero-shot"]
    assert failed["status"] == "failed" and "HTTP 503" in failed["message"]
    assert "the test server is overloaded" in failed["message"]
    first = server.prompts[start:]
    assert len(first) == 5
    server.fail_after = None
    code, _, err = cli("run", INTENTS, *methods, *api_args(server), "--out", "run")
    assert code == 0, err
    second = server.prompts[start + 5 :]
    assert len(second) == 3 and not set(first) & set(second)
    assert results(tmp_path / "run")["methods"]["zero-shot"]["api"]["cached"] == 5


@pytest.mark.slow
def test_a_server_without_logprobs_or_constraints_scores_by_exact_match(cli, server, tmp_path):
    server.logprobs = False
    code, out, err = cli(
        "run", INTENTS, "--methods", "zero-shot", "--limit", "4", *api_args(server)
    )
    assert code == 0, err
    assert "does not offer label log-likelihood" in out + err
    folder = tmp_path / "runs" / "support-intents"
    assert results(folder)["methods"]["zero-shot"]["scoring"].startswith("free generation")
    for p in predictions(folder):
        assert p["scoring"].startswith("free generation") and "answer" in p
        assert p.get("unmapped", False) == (p["output"] not in results(folder)["task"]["labels"])


_LOCAL_ACCURACY: dict[int, float] = {}  # the in-process score does not change between tests


def _local_zero_shot(cli, rows: int) -> float:
    if rows not in _LOCAL_ACCURACY:
        out = ("--out", "local")
        code, _, err = cli("run", INTENTS, "--methods", "zero-shot", "--limit", rows, *out)
        assert code == 0, err
        accuracy = results(Path("local"))["methods"]["zero-shot"]["metrics"]["accuracy"]
        _LOCAL_ACCURACY[rows] = accuracy
    return _LOCAL_ACCURACY[rows]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("props", "structured", "top_logprobs", "path"),
    [
        (False, True, False, "structured output"),  # a chat-only server: OpenAI's json_schema
        (True, True, False, "llama.cpp grammar"),  # a completions server with a grammar
        (True, False, True, "first-token"),  # only the first token's alternatives
    ],
)
def test_labels_are_scored_by_the_best_way_the_server_offers(
    cli, server, tmp_path, props, structured, top_logprobs, path
):
    """Without prompt logprobs, a constrained choice or the first token's log-probs score the
    labels, and zero-shot lands within 0.15 accuracy of in-process on the same rows."""
    server.logprobs, server.props = False, props
    server.structured, server.top_logprobs = structured, top_logprobs
    code, out, err = cli(
        "run",
        INTENTS,
        "--methods",
        "zero-shot",
        "--limit",
        "20",
        *api_args(server),
        "--out",
        "served",
    )
    assert code == 0, err
    entry = results(Path("served"))["methods"]["zero-shot"]
    assert path in entry["scoring"]
    rows = predictions(Path("served"))
    labels = results(Path("served"))["task"]["labels"]
    assert all(p["output"] in labels for p in rows if not p.get("unmapped"))
    if top_logprobs:  # a row whose first-token alternatives start no label is marked, not guessed
        for p in rows:
            starts = [
                t
                for t in p["first_token_logprobs"]
                if t.strip() and any(label.startswith(t.strip()) for label in labels)
            ]
            assert p.get("unmapped", False) == (not starts)
        assert entry["api"]["unmapped_answers"] == sum(bool(p.get("unmapped")) for p in rows)
    else:  # a constrained choice always names a label
        assert not any(p.get("unmapped") for p in rows)
    assert abs(entry["metrics"]["accuracy"] - _local_zero_shot(cli, 20)) <= 0.15


@pytest.mark.slow
def test_without_a_template_messages_go_to_the_chat_endpoint(cli, server, tmp_path):
    server.props = False
    before = server.counts["/v1/chat/completions"]
    code, out, err = cli(
        "run", HELPDESK, "--methods", "zero-shot", "--limit", "3", *api_args(server)
    )
    assert code == 0, err
    assert "messages sent to the chat endpoint" in out + err
    assert server.counts["/v1/chat/completions"] - before == 3


@pytest.mark.slow
def test_a_tokenizer_given_renders_the_prompt_when_the_server_has_no_template(
    cli, server, tmp_path
):
    """--tokenizer supplies the chat template that /props would: labels are then scored by
    log-likelihood through the completions endpoint, as in-process, not by chat messages."""
    server.props = False
    methods = ("--methods", "zero-shot", "--limit", "6")
    chat_before = server.counts["/v1/chat/completions"]
    code, _, err = cli(
        "run", INTENTS, *methods, *api_args(server, "--tokenizer", "embedded"), "--out", "api"
    )
    assert code == 0, err
    assert server.counts["/v1/chat/completions"] == chat_before  # rendered here, not there
    entry = results(tmp_path / "api")["methods"]["zero-shot"]
    assert entry["scoring"] == "label log-likelihood (server prompt logprobs)"
    assert cli("run", INTENTS, *methods, "--out", "local")[0] == 0
    assert_same_scores(tmp_path / "api", tmp_path / "local")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNREACHABLE = "http://127.0.0.1:{port}/v1"
BROKEN = [  # (model, base URL (None: the server's), more arguments, key, words of the line)
    ("smollm2", UNREACHABLE, (), KEY, ["cannot reach", "--base-url"]),
    ("smollm2", None, (), "sk-wrong-key", ["HTTP 401", "Incorrect API key", "was refused"]),
    ("smollm2", None, (), None, ["HTTP 401", "OPENAI_API_KEY is not set"]),
    ("gpt-none", None, (), KEY, ["does not serve model 'gpt-none'", "smollm2"]),
    ("smollm2", None, ("--methods", "lora"), KEY, ["'lora' trains or scores local weights"]),
    ("smollm2", None, ("--calibrate",), KEY, ["--calibrate", "not implemented for served"]),
    ("smollm2", None, ("--concurrency", "0"), KEY, ["--concurrency must be at least 1"]),
]


@pytest.mark.parametrize("model, url, more, key, words", BROKEN)
def test_a_broken_setup_is_one_line(
    cli, server, monkeypatch, tmp_path, model, url, more, key, words
):
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY")
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    url = url.format(port=free_port()) if url else server.url
    args = ["--model", f"openai:{model}", "--base-url", url, "--methods", "zero-shot", *more]
    code, _, err = cli("run", INTENTS, "--limit", "2", *args)
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("adaptwise: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0]
    assert KEY not in err and "sk-wrong-key" not in err
    assert not (tmp_path / "runs" / "support-intents").exists()


@pytest.mark.slow
def test_the_api_key_is_written_nowhere(cli, server, tmp_path):
    code, out, err = cli(
        "run", INTENTS, "--methods", "zero-shot", "--limit", "3", *api_args(server), "--out", "r"
    )
    assert code == 0, err
    assert KEY not in out + err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "api-cache" in str(p) for p in written)
    assert {"results.json", "predictions.jsonl", "report.md", "report.html"} <= {
        p.name for p in written
    }
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


def test_a_corrupt_cache_entry_is_asked_again_with_one_warning(tmp_path):
    lines = []
    cache = ResponseCache(tmp_path, log=lines.append)
    cache.put("ab" * 32, {"choices": []}, 0.5)
    assert cache.get("ab" * 32) == {"response": {"choices": []}, "latency_s": 0.5}
    (tmp_path / "ab" / f"{'ab' * 32}.json").write_text("{not json")
    assert cache.get("ab" * 32) is None and cache.get("ab" * 32) is None
    assert len(lines) == 1 and "ignored" in lines[0]
    cache.put("ab" * 32, {"choices": [1]}, 0.1)
    assert cache.get("ab" * 32)["response"] == {"choices": [1]}
    assert ResponseCache(None).get("ab" * 32) is None  # --no-cache


def test_answers_map_to_labels_exactly_then_loosely():
    labels = ["billing", "order_change", "Product Question"]
    assert map_to_label("billing", labels) == "billing"
    assert map_to_label("  Order_Change\n", labels) == "order_change"
    assert map_to_label("product   question", labels) == "Product Question"
    assert map_to_label("billing, I think", labels) is None
