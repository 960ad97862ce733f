"""A small OpenAI-compatible server for the tests that misbehaves on purpose: no model, canned
JSON replies, and one fault at a time (tests/test_hostile_server.py).

It answers /v1/models, /v1/chat/completions, /v1/completions (a list prompt with `echo` and
`logprobs`, one token per word and space, so label log-likelihoods can be scored) and, when
`props` is set, llama.cpp's /props. Every request is logged with its headers, so a test can
say what a server received (the API key, above all). A fault replaces one route's reply:

    server.fault("/v1/chat/completions", Reply(body=b"<html>oops</html>"), times=1)

`Reply.body` is sent as it is when it is bytes or text, else as JSON (NaN and Infinity as
Python writes them); `trickle_s` sends the whole reply, status line and headers included, one
byte at a time; `size` sends a chat answer of that many bytes.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A template that /props may give: each turn on its own line, the answer closed by "</s>".
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass
class Reply:
    body: object = None  # None: the route's normal reply
    status: int = 200
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"
    trickle_s: float | None = None  # seconds between bytes (of the headers too)
    size: int | None = None  # a chat answer of this many bytes
    announce: bool = True  # False: no Content-Length (the reply ends when the connection does)
    raw: bytes | None = None  # sent instead of an HTTP reply, and the connection closed
    delay_s: float = 0.0  # seconds of silence before the reply
    # A chat fault is kept for the requests that score: the first row's probes for structured
    # output and first-token log-probs (experiments/api_labels.py) get the normal reply unless
    # this is set, so `times` counts the requests the test is about.
    probes: bool = False


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: dict | None


class HostileServer:
    def __init__(self, model: str = "m", answer: str = "billing"):
        self.model = model
        self.answer = answer  # what the chat endpoint answers
        self.props: object = None  # None: no /props (404); a dict: its reply
        self.root_model: str | None = None  # /v1/models' `root` (vLLM's weights behind the name)
        self.requests: list[Request] = []
        self.faults: dict[str, list] = {}  # path -> [Reply, times left (None: always)]
        self.httpd: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    # --- what it answers -------------------------------------------------------------------

    def fault(self, path: str, reply: Reply, times: int | None = None) -> None:
        """Answer `path` with `reply`, `times` times (None: until `heal`)."""
        self.faults[path] = [reply, times]

    def heal(self) -> None:
        self.faults.clear()

    def answered(self, path: str, probes: bool = False) -> int:
        """Requests made to `path`; the label-path probes only when `probes`."""
        return sum(
            r.path == path and (probes or not is_label_probe(r.path, r.body)) for r in self.requests
        )

    def normal(self, path: str, body: dict | None) -> tuple[int, object]:
        if path == "/v1/models":
            entry = {"id": self.model, "object": "model"}
            if self.root_model is not None:
                entry["root"] = self.root_model
            return 200, {"object": "list", "data": [entry]}
        if path == "/props" and self.props is not None:
            return 200, self.props
        if is_label_probe(path, body):  # as a server that offers neither
            return 400, {"error": {"message": "unsupported parameter"}}
        if path == "/v1/chat/completions":
            return 200, self.chat(body or {})
        if path == "/v1/completions":
            return 200, self.completions(body or {})
        return 404, {"error": {"message": f"no route {path}"}}

    def chat(self, body: dict) -> dict:
        choice = {"index": 0, "message": {"role": "assistant", "content": self.answer}}
        return openai_reply(
            "chat.completion", self.model, [choice | {"finish_reason": "stop"}], 20, 2
        )

    def completions(self, body: dict) -> dict:
        prompts = body.get("prompt")
        prompts = prompts if isinstance(prompts, list) else [prompts or ""]
        choices = []
        for index, text in enumerate(prompts):
            if body.get("echo"):
                pieces = re.findall(r"\S+|\s+", text)
                offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
                # Each label's tokens score -1 - index: the first label wins.
                values = [None] + [-1.0 - index] * (len(pieces) - 1)
                logprobs = {"tokens": pieces, "token_logprobs": values, "text_offset": offsets}
                choices.append({"index": index, "text": text, "logprobs": logprobs})
            else:
                choices.append({"index": index, "text": self.answer, "logprobs": None})
        return openai_reply("text_completion", self.model, choices, 10 * len(prompts), len(prompts))

    # --- HTTP --------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port) in a thread; returns the base URL (…/v1)."""
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def take_fault(self, path: str, body: dict | None = None) -> Reply | None:
        with self.lock:
            entry = self.faults.get(path)
            if entry is None:
                return None
            if is_label_probe(path, body) and not entry[0].probes:
                return None
            reply, left = entry
            if left is not None:
                entry[1] = left - 1
                if entry[1] <= 0:
                    del self.faults[path]
            return reply


def is_label_probe(path: str, body: dict | None) -> bool:
    """A chat request that asks for structured output or first-token log-probs."""
    keys = ("response_format", "logprobs", "top_logprobs")
    return path == "/v1/chat/completions" and any(k in (body or {}) for k in keys)


_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 429: "Too Many Requests"}


def openai_reply(kind: str, model: str, choices: list, prompt_tokens: int, done: int) -> dict:
    """A completion's reply as OpenAI's API writes it (also tests/api_server.py's)."""
    return {
        "id": f"test-{time.monotonic_ns()}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": done,
            "total_tokens": prompt_tokens + done,
        },
    }


def _handler(server: HostileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _serve(self, body: dict | None) -> None:
            path = self.path.split("?", 1)[0]
            server.requests.append(Request(self.command, path, dict(self.headers), body))
            fault = server.take_fault(path, body) or Reply()
            status, payload = server.normal(path, body)
            if fault.body is not None:
                status, payload = fault.status, fault.body
            elif fault.status != 200:
                status, payload = fault.status, {"error": {"message": f"HTTP {fault.status}"}}
            if fault.size is not None:  # a chat answer of `size` bytes
                content = b"x" * fault.size
                payload = b'{"choices": [{"index": 0, "message": {"content": "%s"}}]}' % content
            if isinstance(payload, str):
                payload = payload.encode("utf-8")
            if not isinstance(payload, bytes):
                payload = json.dumps(payload).encode("utf-8")
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
            head += [f"Content-Type: {fault.content_type}"]
            if fault.announce:
                head.append(f"Content-Length: {len(payload)}")
            else:
                head.append("Connection: close")
                self.close_connection = True
            head += [f"{name}: {value}" for name, value in fault.headers.items()]
            raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
            if fault.raw is not None:
                raw, self.close_connection = fault.raw, True
            time.sleep(fault.delay_s)
            try:
                if fault.trickle_s is None:
                    self.wfile.write(raw)
                    return
                for i in range(len(raw)):  # the status line and headers too
                    self.wfile.write(raw[i : i + 1])
                    self.wfile.flush()
                    time.sleep(fault.trickle_s)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up, as it should

        def do_GET(self):
            self._serve(None)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = None
            self._serve(body)

    return Handler
