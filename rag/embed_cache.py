"""Chunk vectors cached on disk, keyed by the chunk text's SHA-256 and the embedding model.

Per model: `<name>.npy` (float32 rows) and `<name>.json` (the row keys and the model name).
No pickle: both load with `allow_pickle=False` / json. A second run over an unchanged corpus
embeds nothing; a changed document re-embeds only the chunks whose text changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.atomic import write_bytes_atomic, write_text_atomic
from experiments.errors import AdaptwiseError
from experiments.owned_files import plain_name

EMBED_BATCH = 256  # texts per progress step


class EmbeddingCache:
    def __init__(self, folder: Path, model_name: str) -> None:
        self.model_name = model_name
        self.folder = folder
        self.safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name)
        self.meta_path = folder / f"{self.safe_name}.json"

    def load(self) -> dict[str, np.ndarray]:
        """Cached vectors by text hash; empty if nothing is cached yet."""
        if not self.meta_path.is_file():
            return {}
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            name = plain_name(meta["vectors"], f"{self.safe_name}-", ".npy")
            if name is None:
                raise ValueError(f"vectors file {meta['vectors']!r} is not a plain file name")
            vectors = np.load(self.folder / name, allow_pickle=False)
            keys = meta["keys"]
            if meta.get("model") != self.model_name or len(keys) != len(vectors):
                raise ValueError("keys and vectors disagree")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdaptwiseError(
                f"{self.folder}: the embedding cache is corrupted ({exc}); "
                "delete that folder to rebuild it"
            ) from None
        return dict(zip(keys, vectors))

    def embed(
        self,
        texts: list[str],
        keys: list[str],
        encode: Callable[[list[str]], np.ndarray],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Vectors for `texts` (one row each), embedding only those not cached; saves the cache.

        Returns the matrix and the number of texts embedded now. `progress(done, total)` is
        called after each batch that is embedded.
        """
        cached = self.load()
        missing = sorted({k: i for i, k in enumerate(keys) if k not in cached}.values())
        total = len(missing)
        for start in range(0, total, EMBED_BATCH):
            part = missing[start : start + EMBED_BATCH]
            vectors = encode([texts[i] for i in part])
            for i, v in zip(part, vectors):
                cached[keys[i]] = v
            if progress:
                progress(min(start + EMBED_BATCH, total), total)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32), 0
        matrix = np.stack([cached[k] for k in keys]).astype(np.float32, copy=False)
        if total:
            self._save(keys, matrix)
        return matrix, total

    def _save(self, keys: list[str], matrix: np.ndarray) -> None:
        """Keep exactly the current chunks (stale ones would only grow the file).

        The vectors go to a new file named by their digest and the JSON, written last, points
        to it: an interrupted save leaves the previous cache whole.
        """
        unique = dict.fromkeys(keys)
        index = {k: i for i, k in enumerate(keys)}
        rows = matrix[[index[k] for k in unique]]
        buffer = io.BytesIO()
        np.save(buffer, rows, allow_pickle=False)
        data = buffer.getvalue()
        name = f"{self.safe_name}-{hashlib.sha256(data).hexdigest()[:16]}.npy"
        old = self._current_file()
        write_bytes_atomic(self.folder / name, data)
        meta = {
            "model": self.model_name,
            "dim": int(rows.shape[1]),
            "vectors": name,
            "keys": list(unique),
        }
        write_text_atomic(self.meta_path, json.dumps(meta))
        if old and old != name:
            (self.folder / old).unlink(missing_ok=True)

    def _current_file(self) -> str | None:
        try:
            name = json.loads(self.meta_path.read_text(encoding="utf-8")).get("vectors")
            return plain_name(name, f"{self.safe_name}-", ".npy")
        except (OSError, ValueError, AttributeError):
            return None
