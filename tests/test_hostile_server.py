"""A served model's server that misbehaves (tests/hostile_server.py: canned replies, no model),
table-driven, one case per fault of the hostile-server issue. Each case runs the issue's
reproduction `R` (`adaptwise run TASK --model openai:m --base-url URL --methods ... --limit 2
--out OUT`) in-process and asserts its exit status and the key words of its one line; after
every case the API key and the URL's password appear nowhere (the files under OUT and the cache,
stdout and stderr, what a second server received) and every results.json, predictions.jsonl
and cache entry is strict JSON (no NaN, no Infinity)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hostile_server import TEMPLATE, HostileServer, Reply, is_label_probe

from adaptwise.cli import main

KEY = "sk-hostile-4b1d9e-never-written"
PASSWORD = "pw-hostile-93e7c1"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
PROPS = {"chat_template": TEMPLATE, "eos_token": "</s>"}  # labels scored by log-likelihood
LABELS = ["billing", "shipping"]


def write_task(folder: Path, name: str = "tiny", costs: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.yaml").write_text(
        f"name: {json.dumps(name)}\nkind: classification\ninstruction: Route the message.\n"
        f"labels: [{', '.join(LABELS)}]\ntrain: train.jsonl\neval: eval.jsonl\n{costs}",
        encoding="utf-8",
    )
    for split, n in (("train", 6), ("eval", 6)):
        rows = [
            {"id": f"{split}{i}", "input": f"{split} message {i}", "output": LABELS[i % 2]}
            for i in range(n)
        ]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(text, encoding="utf-8")
    return folder / "task.yaml"


@pytest.fixture
def server(cli):
    served = HostileServer()
    served.start()
    yield served
    served.stop()


@pytest.fixture
def other(cli):
    """A second server: where a redirect points, or where OPENAI_BASE_URL moves to."""
    served = HostileServer()
    served.start()
    cli.servers.append(served)
    yield served
    served.stop()


class Cli:
    def __init__(self, capsys, tmp_path: Path):
        self.capsys, self.tmp = capsys, tmp_path
        self.task = write_task(tmp_path / "task")
        self.out, self.err = "", ""
        self.servers: list[HostileServer] = []  # others than the one the key is meant for

    def __call__(self, *args) -> int:
        self.capsys.readouterr()
        code = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def run(self, server, *more, url=None, out="out") -> int:
        """The issue's R, with `more` arguments."""
        url = url or server.url
        base = ["run", self.task, "--model", "openai:m", "--base-url", url]
        return self(*base, "--methods", "zero-shot", "--limit", "2", "--out", out, *more)

    @property
    def said(self) -> str:
        """stdout and stderr, with the terminal's line wrapping undone."""
        return " ".join((self.out + self.err).split())

    def error_line(self) -> str:
        lines = [x for x in self.err.splitlines() if x.startswith("adaptwise: error: ")]
        assert len(lines) == 1 and "Traceback" not in self.err, self.err
        return lines[0]

    def results(self, out="out") -> dict:
        return strict_json((self.tmp / out / "results.json").read_text(encoding="utf-8"))


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """The CLI in-process, from tmp_path, with the key and a private API cache; afterwards,
    the key and the password are nowhere and the JSON is strict."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ADAPTWISE_API_CACHE", str(tmp_path / "api-cache"))
    monkeypatch.setenv("COLUMNS", "400")  # few wrapped lines
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cli = Cli(capsys, tmp_path)
    yield cli
    nothing_leaked(cli)


def _refuse(name: str):
    raise AssertionError(f"{name} in a file that must be strict JSON")


def strict_json(text: str):
    return json.loads(text, parse_constant=_refuse)


def nothing_leaked(cli: Cli) -> None:
    for secret in (KEY, PASSWORD):
        assert secret not in cli.out + cli.err
    for path in cli.tmp.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for secret in (KEY, PASSWORD):
            assert secret.encode() not in data, path
        if path.suffix in (".md", ".html"):
            assert b"\x1b" not in data and b"\x07" not in data, path
        if path.name == "results.json" or "api-cache" in path.parts:
            strict_json(data.decode("utf-8"))
        if path.name == "predictions.jsonl":
            for line in filter(None, data.decode("utf-8").splitlines()):
                strict_json(line)
    for served in cli.servers:  # what the second server was sent
        for sent in served.requests:
            for value in sent.headers.values():
                assert KEY not in value and PASSWORD not in value


def chat_reply(content="billing", usage=None) -> dict:
    usage = usage if usage is not None else {"prompt_tokens": 20, "completion_tokens": 2}
    choice = {"index": 0, "message": {"role": "assistant", "content": content}}
    return {"object": "chat.completion", "model": "m", "choices": [choice], "usage": usage}


def echo_reply(values, offsets=(0, 5), choices=2) -> dict:
    logprobs = {"tokens": ["a"] * len(values), "token_logprobs": values, "text_offset": offsets}
    return {
        "object": "text_completion",
        "choices": [{"index": i, "text": "x", "logprobs": logprobs} for i in range(choices)],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2},
    }


# --- secrets ---------------------------------------------------------------------------------


def test_a_redirect_is_not_followed_and_the_other_server_gets_nothing(cli, server, other):
    """Case 1: /props answers a redirect to another port; urllib followed it with the key."""
    server.fault("/props", Reply(status=302, headers={"Location": f"{other.root}/props"}))
    assert cli.run(server) == 2
    line = cli.error_line()
    assert "GET /props" in line and "HTTP 302" in line and "not followed" in line
    assert f"{other.root}/props" in line
    assert other.requests == []
    assert not (cli.tmp / "out").exists()


@pytest.mark.parametrize(
    "key, words",
    [
        (KEY + "\r", ["a carriage return", f"character {len(KEY) + 1} of {len(KEY) + 1}"]),
        (KEY + "\n", ["a line feed"]),
        ("sk-hostile 4b1d", ["a space", "character 11"]),
        (KEY + "é", ["a non-ASCII character"]),
        (KEY + "\x1b", ["a control character"]),
    ],
)
def test_a_key_with_a_stray_character_is_refused_unseen(cli, server, monkeypatch, key, words):
    """Case 2: the key with a line end was printed whole, as "cannot reach ... start the
    server"."""
    monkeypatch.setenv("OPENAI_API_KEY", key)
    assert cli.run(server) == 2
    line = cli.error_line()
    assert "OPENAI_API_KEY holds" in line and "cannot reach" not in line
    assert all(w in line for w in words), line
    assert "hostile" not in cli.said and "4b1d" not in cli.said
    assert server.requests == []  # refused before anything is sent


def test_a_password_in_the_url_is_masked_everywhere(cli, server):
    """Case 3: `http://alice:pw@host/v1` was kept in results.json, the log and plan --json."""
    url = server.url.replace("http://", f"http://alice:{PASSWORD}@")
    masked = server.url.replace("http://", "http://***@")
    assert cli.run(server, url=url) == 0, cli.err
    assert cli.results()["options"]["base_url"] == masked
    assert f"model m at {masked}" in cli.said
    assert "alice" not in cli.said
    base = ["plan", cli.task, "--model", "openai:m", "--base-url", url]
    assert cli(*base, "--methods", "zero-shot", "--json") == 0, cli.err
    assert json.loads(cli.out)["base_url"] == masked
    with socket_closed() as port:  # an unreachable one is named masked too
        assert cli.run(server, url=f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1") == 2
    assert "cannot reach http://***@127.0.0.1" in cli.error_line()


class socket_closed:
    """A port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        pass


# --- setup problems: one line, exit 2, before any work -------------------------------------

SETUP = [
    ("models-html", "/v1/models", Reply(body=b"<html>login</html>"), ["GET /models", "HTML"]),
    ("models-not-a-list", "/v1/models", Reply(body={"data": "x"}), ["GET /models", "data list"]),
    ("models-redirect", "/v1/models", "redirect", ["GET /models", "HTTP 302", "not followed"]),
    ("props-html", "/props", Reply(body=b"<!doctype html>"), ["GET /props", "HTML", "--tokenizer"]),
    (
        "props-template-broken",
        "/props",
        Reply(body={"chat_template": "{% for m in messages %}{{ m.content }"}),
        ["GET /props", "chat_template does not render", "--tokenizer"],
    ),
    (
        "props-template-not-text",
        "/props",
        Reply(body={"chat_template": 5}),
        ["GET /props", "chat_template is not text"],
    ),
    ("props-infinity", "/props", Reply(body={"chat_template": float("inf")}), ["Infinity"]),
    ("chat-redirect", CHAT, "redirect", ["POST", "HTTP 302", "not followed"]),
]


@pytest.mark.parametrize("path, reply, words", [c[1:] for c in SETUP], ids=[c[0] for c in SETUP])
def test_a_broken_model_list_or_props_is_one_line_before_any_work(
    cli, server, other, path, reply, words
):
    """Case 4: /models answering HTML or a broken /props template ended the run with
    "unexpected ...", exit 1, naming no server."""
    if reply == "redirect":
        reply = Reply(status=302, headers={"Location": f"{other.root}{path}"})
    server.fault(path, reply)
    assert cli.run(server) == 2
    line = cli.error_line()
    assert server.url in line and all(w in line for w in words), line
    assert not line.startswith("adaptwise: error: unexpected")
    assert other.requests == []
    assert not (cli.tmp / "out" / "results.json").exists()


# --- malformed replies: the method fails in one line, the others run, nothing is cached ----

nan, inf = float("nan"), float("inf")
MALFORMED = [  # (id, route, reply, /props given, words of the method's failure)
    ("invalid-json", CHAT, Reply(body=b'{"choices": [{'), False, ["not JSON"]),
    ("html", CHAT, Reply(body=b"<html>Bad gateway</html>"), False, ["HTML"]),
    ("choices-a-string", CHAT, Reply(body={"choices": "x"}), False, ["choices is not a list"]),
    ("a-json-list", CHAT, Reply(body=[chat_reply()]), False, ["a JSON list"]),
    (
        "created-1e999",
        CHAT,
        Reply(body=json.dumps(chat_reply()).replace('"object"', '"created": 1e999, "object"')),
        False,
        ["1e999 is not a finite number"],
    ),
    ("no-choices", CHAT, Reply(body={"usage": {"prompt_tokens": 3}}), False, ["no choices"]),
    ("empty-choices", CHAT, Reply(body={"choices": []}), False, ["no choices"]),
    ("no-message", CHAT, Reply(body={"choices": [{"index": 0}]}), False, ["no message"]),
    (
        "usage-as-strings",
        CHAT,
        Reply(body=chat_reply(usage={"prompt_tokens": "20", "completion_tokens": "2"})),
        False,
        ["usage prompt_tokens", "not a number"],
    ),
    (
        "usage-negative",
        CHAT,
        Reply(body=chat_reply(usage={"prompt_tokens": -1000, "completion_tokens": 2})),
        False,
        ["usage prompt_tokens", "below 0"],
    ),
    (
        "usage-1e308",
        CHAT,
        Reply(body=chat_reply(usage={"prompt_tokens": 1e308, "completion_tokens": 2})),
        False,
        ["usage prompt_tokens", "not a whole number"],
    ),
    (
        "usage-nan",
        CHAT,
        Reply(body=chat_reply(usage={"prompt_tokens": nan})),
        False,
        ["NaN is not JSON"],
    ),
    (
        "usage-over-max-tokens",
        CHAT,
        Reply(body=chat_reply(usage={"prompt_tokens": 20, "completion_tokens": 10**6})),
        False,
        ["completion_tokens", "more than was asked for"],
    ),
    ("reply-50-MB", CHAT, Reply(size=50_000_000), False, ["50,000,", "bytes"]),
    (
        "reply-50-MB-unannounced",
        CHAT,
        Reply(size=50_000_000, announce=False),
        False,
        ["more than", "bytes"],
    ),
    (
        "answer-over-max-tokens",
        CHAT,
        Reply(body=chat_reply(content="billing " * 5000)),
        False,
        ["40,000 characters", "max_tokens"],
    ),
    ("logprob-nan", COMPLETIONS, Reply(body=echo_reply([None, nan])), True, ["NaN is not JSON"]),
    (
        "logprob-infinity",
        COMPLETIONS,
        Reply(body=echo_reply([None, inf])),
        True,
        ["Infinity is not JSON"],
    ),
    (
        "logprob-overflow",
        COMPLETIONS,
        Reply(body=json.dumps(echo_reply([None, -1.0])).replace("-1.0", "-1e999")),
        True,
        ["-1e999 is not a finite number"],
    ),
    (
        "logprob-positive",
        COMPLETIONS,
        Reply(body=echo_reply([None, 3.5])),
        True,
        ["token logprob 1", "above"],
    ),
    (
        "logprobs-of-other-lengths",
        COMPLETIONS,
        Reply(body=echo_reply([None, -1.0], offsets=[0])),
        True,
        ["differ in length"],
    ),
    (
        "one-choice-for-two-labels",
        COMPLETIONS,
        Reply(body=echo_reply([None, -1.0], choices=1)),
        True,
        ["1 choices for 2 prompts"],
    ),
    (
        "rich-markup-in-the-error",
        CHAT,
        Reply(status=400, body={"error": {"message": "bad [/bold] request [link=http://x]y"}}),
        False,
        ["HTTP 400 (1 try)", "bad [/bold] request [link=http://x]y"],
    ),
    (
        "terminal-escapes-in-the-error",
        CHAT,
        Reply(status=400, body={"error": {"message": "\x1b[2J\x1b]0;owned\x07cleared?"}}),
        False,
        ["HTTP 400", ": cleared?"],
    ),
    (
        "429-retry-after-100000",
        CHAT,
        Reply(status=429, headers={"Retry-After": "100000"}),
        False,
        ["HTTP 429 (1 try; not retried: the server asks to wait 100,000 s)"],
    ),
]


@pytest.mark.parametrize(
    "path, reply, props, words", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_malformed_reply_fails_its_method_and_the_others_run(
    cli, server, path, reply, props, words
):
    """Cases 4, 6-10, 12, 19: each reply ended the whole run ("unexpected ...", exit 1), was
    scored as an empty or NaN-argmax answer, reported negative costs, or printed markup and
    escapes as sent. Now the first method fails in one line naming the server and the fault,
    the second runs, and the faulty reply is in no cache entry."""
    server.props = PROPS if props else None
    server.fault(path, reply, times=1)
    assert cli.run(server, "--methods", "zero-shot,few-shot-random", "--concurrency", "1") == 0
    results = cli.results()
    assert list(results["methods"]) == ["few-shot-random"], cli.err
    message = results["failed"]["zero-shot"]["message"]
    assert message.startswith(f"{server.url} (model m): "), message
    assert all(w in message for w in words), message
    assert "\x1b" not in cli.out + cli.err and "\x07" not in cli.out + cli.err
    assert f"zero-shot: failed; {message}" in cli.said
    posts = [r for r in server.requests if r.method == "POST"]
    answers = [r for r in posts if not is_label_probe(r.path, r.body)]  # probes are refused
    cached = list((cli.tmp / "api-cache").rglob("*.json"))
    assert len(cached) == len(answers) - 1  # every answer but the faulty one
    for line in (cli.tmp / "out" / "predictions.jsonl").read_text().splitlines():
        assert strict_json(line)["method"] == "few-shot-random"


def test_an_answer_refused_for_its_time_is_cut_at_the_deadline(cli, server, monkeypatch):
    """Case 13: a reply sent one byte at a time was waited on for minutes (the timeout applied
    to each read). Now each try has a deadline for all of it, and is not tried again."""
    monkeypatch.setattr("experiments.api_model.TIMEOUT_S", 1.5)
    server.fault(CHAT, Reply(trickle_s=0.25), times=1)
    started = time.monotonic()
    assert cli.run(server, "--methods", "zero-shot,few-shot-random", "--concurrency", "1") == 0
    assert time.monotonic() - started < 30
    message = cli.results()["failed"]["zero-shot"]["message"]
    assert "no complete reply within 1.5 s" in message
    server.fault("/v1/models", Reply(trickle_s=0.25))
    started = time.monotonic()
    assert cli.run(server, out="second") == 2
    assert time.monotonic() - started < 10
    assert "GET /models: no complete reply within 1.5 s" in cli.error_line()


def test_a_silent_server_is_a_timeout_tried_again(cli, server, monkeypatch):
    """No byte at all within the deadline is a timeout, tried again as the openai client tries
    timeouts (an overloaded server); the line says so and how many tries were made."""
    monkeypatch.setattr("experiments.api_model.TIMEOUT_S", 0.5)
    server.fault(CHAT, Reply(delay_s=2.0), times=4)
    assert cli.run(server, "--limit", "1") == 1  # its one method failed
    message = cli.results()["failed"]["zero-shot"]["message"]
    assert "no reply within 0.5 s (4 tries)" in message and "lower --concurrency" in message
    assert server.answered(CHAT) == 4


def test_a_server_error_is_retried_and_the_tries_counted(cli, server):
    """Case 19's other side: a 503 is tried 4 times (3 retries), and the line says so."""
    server.fault(CHAT, Reply(status=503), times=4)
    assert cli.run(server, "--limit", "1") == 1  # its one method failed
    assert "HTTP 503 (4 tries)" in cli.results()["failed"]["zero-shot"]["message"]
    assert server.answered(CHAT) == 4


def test_an_empty_answer_is_counted_and_said(cli, server):
    """Case 7's valid neighbour: a choice whose message holds no text (content null) is an
    answer, scored wrong as the model gave it, but never silently: counted and said."""
    server.fault(CHAT, Reply(body=chat_reply(content=None)), times=1)
    assert cli.run(server, "--concurrency", "1", "--limit", "1") == 0, cli.err
    api = cli.results()["methods"]["zero-shot"]["api"]
    assert api["empty_answers"] == 1 and api["unmapped_answers"] == 1
    assert "warning: 1 of 1 answers from openai:m are empty" in cli.said


def test_a_reply_that_is_not_http_is_tried_again_then_fails_its_method(cli, server):
    """Not HTTP at all: tried again as a broken connection is, then the method fails in one
    line (not "cannot reach ...; start the server", which would end the run)."""
    server.fault(CHAT, Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), times=4)
    assert cli.run(server, "--methods", "zero-shot,few-shot-random", "--limit", "1") == 0
    message = cli.results()["failed"]["zero-shot"]["message"]
    assert "POST /chat/completions: the reply broke off or was not HTTP" in message
    assert "4 tries" in message and "few-shot-random" in cli.results()["methods"]


# --- the cache ---------------------------------------------------------------------------


def test_a_bad_reply_is_not_cached_and_a_bad_entry_is_asked_again(cli, server):
    """Cases 5 and 11: bad replies were cached, so the rerun against the fixed server still
    crashed and sent 0 requests; edited entries that parse (latency "abc" or -3, choices 5)
    crashed it or gave a p50 of -1.493 s."""
    server.fault(CHAT, Reply(body={"choices": "x"}))
    assert cli.run(server, "--limit", "5") == 1  # its one method failed
    assert "zero-shot" in cli.results()["failed"]
    assert not list((cli.tmp / "api-cache").rglob("*.json"))
    server.heal()
    before = server.answered(CHAT)
    assert cli.run(server, "--limit", "5") == 0, cli.err
    assert server.answered(CHAT) - before == 5
    assert "zero-shot" in cli.results()["methods"]

    entries = sorted((cli.tmp / "api-cache").rglob("*.json"))
    assert len(entries) == 5
    edits = [
        lambda e: e | {"latency_s": "abc"},
        lambda e: e | {"latency_s": -3},
        lambda e: e | {"response": e["response"] | {"choices": 5}},
        lambda e: e | {"latency_s": 1e400},  # Infinity as json.dumps writes it
        lambda e: e | {"response": e["response"] | {"usage": {"prompt_tokens": -7}}},
    ]
    for path, edit in zip(entries, edits):
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    before = server.answered(CHAT)
    assert cli.run(server, "--limit", "5", out="again") == 0, cli.err
    assert server.answered(CHAT) - before == 5  # every edited entry is a miss
    assert cli.said.count("ignored") == 1 and "it is asked again" in cli.said
    entry = cli.results("again")["methods"]["zero-shot"]
    assert entry["latency"]["p50_s"] >= 0 and entry["api"]["cached"] == 0
    for path in entries:  # replaced by the new answers
        assert strict_json(path.read_text())["latency_s"] >= 0


# --- numbers from outside ----------------------------------------------------------------

NUMBERS = [  # (more arguments, task costs, words)
    (("--prompt-token-price", "nan"), "", ["--prompt-token-price must be a number of 0 or more"]),
    (("--generated-token-price", "inf"), "", ["--generated-token-price must be", "inf"]),
    (("--prompt-token-price", "-1"), "", ["--prompt-token-price must be a number of 0 or more"]),
    ((), "costs:\n  prompt_per_1k_tokens: .nan\n", ["costs prompt_per_1k_tokens must be", "nan"]),
    ((), "costs:\n  generated_per_1k_tokens: -2\n", ["costs generated_per_1k_tokens must be"]),
    ((), "costs:\n  queries_per_day: .inf\n", ["costs queries_per_day must be", "inf"]),
]


@pytest.mark.parametrize("more, costs, words", NUMBERS)
def test_a_number_that_is_not_finite_or_in_range_is_one_line(cli, server, more, costs, words):
    """Case 10: NaN and infinite prices were taken (results.json held bare NaN), negative ones
    refused: one check now refuses all of them alike."""
    if costs:
        cli.task = write_task(cli.tmp / "task-costs", costs=costs)
    assert cli.run(server, *more) == 2
    line = cli.error_line()
    assert all(w in line for w in words), line


def test_fit_memory_gb_is_finite(cli):
    """Case 10: `--finetune fit_memory_gb=inf` was taken as a budget of Infinity GB."""
    args = ("run", cli.task, "--methods", "lora", "--finetune")
    assert cli(*args, "fit_memory_gb=inf", "--out", "ft") == 2
    assert "fit_memory_gb must be a number above 0, not inf" in cli.error_line()
    assert cli(*args, "learning_rate=nan", "--out", "ft") == 2
    assert "learning_rate must be a finite number, not nan" in cli.error_line()


def test_the_costs_are_never_negative(cli, server):
    """Cases 9 and 21: negative usage gave -1,000 tokens and -10.10 USD per 1,000 queries, a
    plan total of "-0.8000 USD", and `--queries-per-day -0` "USD -0.00"."""
    prices = ("--prompt-token-price", "10", "--generated-token-price", "1")
    server.fault(CHAT, Reply(body=chat_reply(usage={"prompt_tokens": -1000})))
    base = ["plan", cli.task, "--model", "openai:m", "--base-url", server.url]
    assert cli(*base, "--methods", "zero-shot", "--json", *prices) == 0, cli.err
    plan = json.loads(cli.out)
    step = plan["steps"][0]
    assert not step["runnable"] and "below 0" in step["notes"][0]
    assert plan["total_cost"] is None
    server.heal()
    assert cli.run(server, *prices) == 0
    assert cli("report", "out", "--queries-per-day", "-0") == 0, cli.err
    report = (cli.tmp / "out" / "report.md").read_text()
    assert "Per month at 0 queries/day" in report and "-0.00" not in report
    api = cli.results()["methods"]["zero-shot"]["api"]
    assert api["prompt_tokens"] > 0 and api["completion_tokens"] > 0


# --- text from outside is plain text --------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["support [v2]", "x [/bold] y", "[link=http://x]click[/link]", "a\x1b[2Jb\x1b]0;t\x07"]
)
def test_a_task_name_is_shown_as_it_is(cli, server, name):
    """Case 6: `support [v2]` was shown as "support ", `[/bold]` ended the run (MarkupError)."""
    cli.task = write_task(cli.tmp / "named", name=name)
    server.answer = "\x1b[2J[/bold]billing"  # an answer with escapes and markup: unmapped
    assert cli.run(server) == 0, cli.err
    shown = name.replace("\x1b[2J", "").replace("\x1b]0;t\x07", "")
    assert f"{shown} (classification)" in cli.said
    assert "\x1b" not in cli.out + cli.err
    report = (cli.tmp / "out" / "report.md").read_text()
    assert "\x1b" not in report and "\x07" not in report
    predictions = (cli.tmp / "out" / "predictions.jsonl").read_text().splitlines()
    assert strict_json(predictions[0])["answer"] == "\x1b[2J[/bold]billing"


# --- the served model's identity ------------------------------------------------------------


def test_another_server_from_the_environment_is_not_taken_for_the_first(cli, server, monkeypatch):
    """Case 17: with the URL from OPENAI_BASE_URL, results.json recorded `base_url: null`, so
    a rerun against another server kept the first one's answers and sent nothing."""
    other = HostileServer()  # the key is meant for this one too: the user pointed at it
    other.start()
    try:
        _moves_to(cli, server, other, monkeypatch)
    finally:
        other.stop()


def _moves_to(cli, server, other, monkeypatch) -> None:
    base = ["run", cli.task, "--model", "openai:m", "--methods", "zero-shot", "--limit", "2"]
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    assert cli(*base, "--out", "out") == 0, cli.err
    assert cli.results()["options"]["base_url"] == server.url
    monkeypatch.setenv("OPENAI_BASE_URL", other.url)
    assert cli(*base, "--out", "out") == 0, cli.err
    assert other.answered(CHAT) == 2
    assert "made with other base_url" in cli.said
    assert cli.results()["options"]["base_url"] == other.url
    # The same URL, other weights behind the same name (vLLM's `root`): asked again.
    other.root_model = "org/weights-v2"
    assert cli(*base, "--out", "out") == 0, cli.err
    assert other.answered(CHAT) == 4 and "made with other served_model" in cli.said
    assert cli.results()["options"]["served_model"] == "org/weights-v2"
    assert cli(*base, "--out", "out") == 0, cli.err
    assert other.answered(CHAT) == 4 and "kept from the earlier run" in cli.said


# --- the plan's precision is the run's ------------------------------------------------------


def test_plan_refuses_a_precision_the_run_refuses(cli):
    """Case 18: `plan --precision fp16` on a CPU said LoRA fits; `run --precision fp16` refused
    it. Both now apply experiments/precision.py's rule, in the same line."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16 is a GPU's precision: the refusal is a CPU's")
    args = (cli.task, "--methods", "lora", "--precision", "fp16")
    assert cli("plan", *args) == 2
    planned = cli.error_line()
    assert cli("run", *args, "--out", "fp16") == 2
    assert cli.error_line() == planned and "--precision fp16 trains only on a GPU" in planned
