"""The HTTP client of every request adaptwise sends to a served model's server (the `openai`
client's requests and llama.cpp's `/props` alike), with the limits a server cannot lift:

- no redirect is followed: a 3xx is an answer (the key would go wherever it pointed);
- a whole-request deadline: each try gets `deadline_s` for everything (connecting, sending,
  every byte of the reply), enforced on every socket operation, so a server that sends one
  byte every 20 s is cut off at the deadline, not waited on for ever. A try that got no byte
  at all by then is a timeout, which the `openai` client tries again (an overloaded server);
  one whose reply had begun is refused;
- a size cap: a reply longer than `reply_cap` (a few MiB, more for a long request) is refused
  as it arrives, never held whole in memory.

A reply refused for its time or size raises `ReplyRefused`, which the `openai` client does not
retry (the same server would do it again). The proxy of the environment (`HTTPS_PROXY`,
`NO_PROXY`, ...) is used as the `openai` client would.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from urllib.parse import urlsplit

import httpcore2
import httpx2

BASE_REPLY_BYTES = 1 << 20  # what any reply may hold: 1 MiB
REPLY_BYTES_PER_REQUEST_BYTE = 128  # an echoed prompt's logprobs take ~100 bytes a character


class ReplyRefused(Exception):
    """A reply the client will not take (too slow in all, too large): not retried."""


def reply_cap(request_bytes: int) -> int:
    """The most bytes a reply to a request of `request_bytes` may hold."""
    return BASE_REPLY_BYTES + REPLY_BYTES_PER_REQUEST_BYTE * request_bytes


def http_client(base_url: str, deadline_s: float, connections: int) -> httpx2.Client:
    """An httpx2 client for the `openai` client (`http_client=`) talking to `base_url`."""
    inner = httpx2.HTTPTransport(
        proxy=_environment_proxy(base_url),
        limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    # httpx2 takes no network backend of its own; its pool's is wrapped so that every socket
    # operation of a request waits at most until the request's deadline.
    pool = inner._pool
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return httpx2.Client(
        transport=_GuardedTransport(inner, deadline_s),
        follow_redirects=False,
        timeout=httpx2.Timeout(deadline_s, connect=min(deadline_s, 10.0)),
        headers={"Accept-Encoding": "identity"},  # the size cap counts what is held
    )


def _environment_proxy(base_url: str) -> str | None:
    """The proxy the environment names for `base_url` (none when NO_PROXY covers its host)."""
    parts = urlsplit(base_url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


# This thread's try: .deadline (time.monotonic() by which it ends), .limit (its seconds) and
# .received (whether a byte of the reply came).
_local = threading.local()


def _time_left(timeout: float | None) -> float | None:
    """The socket timeout for one operation: `timeout`, at most the time left to the deadline."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0 and getattr(_local, "received", False):
        raise ReplyRefused(f"no complete reply within {_local.limit:g} s")
    left = max(left, 0.001)  # nothing came yet: the operation times out, as a timeout does
    return left if timeout is None else min(timeout, left)


def _past_deadline() -> bool:
    deadline = getattr(_local, "deadline", None)
    return deadline is not None and time.monotonic() >= deadline - 0.01


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream):
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = self.inner.read(max_bytes, _time_left(timeout))
        except httpcore2.TimeoutException:
            if _past_deadline() and getattr(_local, "received", False):
                raise ReplyRefused(f"no complete reply within {_local.limit:g} s") from None
            raise  # nothing came: a timeout, tried again
        _local.received = getattr(_local, "received", False) or bool(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(
            self.inner.start_tls(ssl_context, server_hostname, _time_left(timeout))
        )

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend):
        self.inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self.inner.connect_tcp(
            host, port, _time_left(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(
            self.inner.connect_unix_socket(path, _time_left(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _GuardedTransport(httpx2.BaseTransport):
    """Sets each request's deadline, refuses a reply over its size cap as it arrives."""

    def __init__(self, inner: httpx2.BaseTransport, deadline_s: float):
        self.inner = inner
        self.deadline_s = deadline_s

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        _local.deadline, _local.limit = time.monotonic() + self.deadline_s, self.deadline_s
        _local.received = False
        try:
            cap = reply_cap(len(request.content))
        except httpx2.RequestNotRead:  # a streamed body: the base cap
            cap = reply_cap(0)
        response = self.inner.handle_request(request)
        length = response.headers.get("content-length", "")
        problem = None
        if length.isdigit() and int(length) > cap:
            problem = f"the reply announces {int(length):,} bytes, over the {cap:,} allowed"
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            problem = f"the reply is compressed ({encoding[:20]}) although none was asked for"
        if problem is not None:
            response.close()
            raise ReplyRefused(problem)
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, cap),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


class _CappedStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, cap: int):
        self.inner = inner
        self.cap = cap

    def __iter__(self):
        seen = 0
        for chunk in self.inner:
            seen += len(chunk)
            if seen > self.cap:
                raise ReplyRefused(f"the reply holds more than {self.cap:,} bytes")
            yield chunk

    def close(self) -> None:
        _local.deadline = None
        self.inner.close()
