"""`adaptwise plan --model openai:NAME` against the test suite's OpenAI-compatible server
(tests/api_server.py): the served methods only, tokens from the server's usage, cost from the
token prices, no memory estimate, the probe rows cached for the run, and a broken setup in one
line. No timing is asserted."""

from __future__ import annotations

import json

import pytest
from test_api_models import INTENTS, KEY, api_args, cli, free_port, server  # noqa: F401

PRICES = ("--prompt-token-price", "0.5", "--generated-token-price", "2")


@pytest.mark.slow
def test_plan_probes_a_served_model_and_prices_its_tokens(cli, server):  # noqa: F811
    before = sum(server.counts.values())
    args = ("--methods", "zero-shot,lora", "--limit", "10", "--json", *PRICES)
    code, out, err = cli("plan", INTENTS, *api_args(server, *args))
    assert code == 0, err
    plan = json.loads(out)
    assert plan["served"] and plan["rows_scored"] == 10 and plan["concurrency"] == 8
    assert [s["method"] for s in plan["steps"]] == ["zero-shot"]
    assert plan["skipped"][0]["method"] == "lora"
    step = plan["steps"][0]
    assert step["probe"]["rows"] == 3 and step["probe"]["requests_per_row"] == 1
    assert step["peak_memory_gb"] is None and step["usage_reported"]
    prompt, generated = step["prompt_tokens"], step["generated_tokens"]
    assert prompt > 8 * 50  # label log-likelihood: the prompt is sent once per label (8)
    # cost = rows x (prompt tokens x 0.5 + generated tokens x 2) / 1000
    assert step["cost"] == pytest.approx(10 * (prompt * 0.5 + generated * 2) / 1000, rel=1e-3)
    est = step["estimate_s"]
    assert est["score"] == pytest.approx(est["serial_score"] / 8, abs=0.2)
    assert sum(server.counts.values()) - before == 3  # one request per probed row
    # The probe's rows are the run's first rows: a run of them asks nothing again.
    code, _, err = cli("run", INTENTS, *api_args(server, "--methods", "zero-shot", "--limit", "3"))
    assert code == 0, err
    assert sum(server.counts.values()) - before == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, url, key, words",
    [
        ("smollm2", "unreachable", KEY, ["cannot reach"]),
        ("smollm2", None, "sk-wrong-key", ["HTTP 401", "was refused"]),
        ("gpt-none", None, KEY, ["does not serve model 'gpt-none'"]),
    ],
)
def test_plan_with_a_broken_server_is_one_line(cli, server, monkeypatch, model, url, key, words):  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", key)
    url = f"http://127.0.0.1:{free_port()}/v1" if url else server.url
    code, _, err = cli("plan", INTENTS, "--model", f"openai:{model}", "--base-url", url)
    lines = [x for x in err.splitlines() if x.startswith("adaptwise: error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words) and "sk-wrong-key" not in err
