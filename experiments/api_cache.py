"""Responses of a served model, cached on disk by (base URL, model, endpoint, request body).

A rerun, a report re-render or a resumed run pays for no request twice: each answer is written
(atomically) the moment it arrives, so a run killed halfway keeps everything answered so far.
The key holds no API key and neither do the entries (a response body and its measured latency).
Only replies that passed experiments/api_reply.py's check are written, and each entry is checked
again when read (strict JSON, a latency from 0 to a day, the same reply check): a corrupt or
edited entry is a miss, replaced by the next answer, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from experiments.api_reply import MalformedReply, parse_reply
from experiments.atomic import write_text_atomic
from experiments.numbers import number_problem

CACHE_ENV = "ADAPTWISE_API_CACHE"
MAX_LATENCY_S = 86_400.0  # a cached latency above a day is not one that was measured


def default_cache_root() -> Path:
    """`ADAPTWISE_API_CACHE`, else `api-responses/` in adaptwise's cache folder."""
    from experiments.models import cache_dir

    return Path(os.environ.get(CACHE_ENV) or cache_dir() / "api-responses")


def request_key(
    base_url: str, model: str, endpoint: str, body: dict, served_model: str | None = None
) -> str:
    """The entry's name: the (masked) base URL, the model, the weights the server says it
    serves where it says so, the endpoint and the request body."""
    identity = {"base_url": base_url.rstrip("/"), "model": model, "endpoint": endpoint}
    if served_model is not None:
        identity["served_model"] = served_model
    text = json.dumps({**identity, "body": body}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: Path | None, log=print):
        self.root = Path(root) if root is not None else None  # None: --no-cache
        self.log = log
        self._warned = False

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, check=None) -> dict | None:
        """The cached {"response", "latency_s"}, or None (missing, disabled or corrupt).
        `check(response)` says what is wrong with a response (None: nothing)."""
        if self.root is None:
            return None
        path = self._path(key)
        try:
            entry = parse_reply(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(path, exc.strerror or type(exc).__name__)
            return None
        except MalformedReply as exc:
            self._warn(path, exc)
            return None
        problem = _entry_problem(entry)
        if problem is None and check is not None:
            problem = check(entry["response"])
        if problem is not None:
            self._warn(path, problem)
            return None
        return entry

    def put(self, key: str, response: dict, latency_s: float) -> None:
        if self.root is None:
            return
        entry = {"response": response, "latency_s": round(latency_s, 4)}
        try:
            text = json.dumps(entry, ensure_ascii=False, allow_nan=False)
            write_text_atomic(self._path(key), text)
        except OSError as exc:
            self._warn(self._path(key), exc)

    def _warn(self, path: Path, problem) -> None:
        if not self._warned:  # one line per run, not one per request
            self._warned = True
            self.log(f"warning: API cache entry {path} ignored ({problem}); it is asked again")


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
        return "not a cached response"
    problem = number_problem(entry.get("latency_s"), high=MAX_LATENCY_S)
    return f"latency_s {problem}" if problem else None
