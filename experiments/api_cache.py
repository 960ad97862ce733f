"""Responses of a served model, cached on disk by (base URL, model, endpoint, request body).

A rerun, a report re-render or a resumed run pays for no request twice: each answer is written
(atomically) the moment it arrives, so a run killed halfway keeps everything answered so far.
The key holds no API key and neither do the entries (a response body and its measured latency).
A corrupt entry is a miss, replaced by the next answer, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from experiments.atomic import write_text_atomic

CACHE_ENV = "ADAPTWISE_API_CACHE"


def default_cache_root() -> Path:
    """`ADAPTWISE_API_CACHE`, else `api-responses/` in adaptwise's cache folder."""
    from experiments.models import cache_dir

    return Path(os.environ.get(CACHE_ENV) or cache_dir() / "api-responses")


def request_key(base_url: str, model: str, endpoint: str, body: dict) -> str:
    identity = {"base_url": base_url.rstrip("/"), "model": model, "endpoint": endpoint}
    text = json.dumps({**identity, "body": body}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: Path | None, log=print):
        self.root = Path(root) if root is not None else None  # None: --no-cache
        self.log = log
        self._warned = False

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The cached {"response", "latency_s"}, or None (missing, disabled or corrupt)."""
        if self.root is None:
            return None
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._warn(path, exc)
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
            self._warn(path, "not a cached response")
            return None
        return entry

    def put(self, key: str, response: dict, latency_s: float) -> None:
        if self.root is None:
            return
        entry = {"response": response, "latency_s": round(latency_s, 4)}
        try:
            write_text_atomic(self._path(key), json.dumps(entry, ensure_ascii=False))
        except OSError as exc:
            self._warn(self._path(key), exc)

    def _warn(self, path: Path, problem) -> None:
        if not self._warned:  # one line per run, not one per request
            self._warned = True
            self.log(f"warning: API cache entry {path} ignored ({problem}); it is asked again")
