"""The `rag:` section of a task file, checked, with the measured defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import TaskError
from experiments.task import Task
from rag.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS

DEFAULT_K = 2  # passages per prompt (docs/rag.md: measured on the demo QA task)
DEFAULT_SHOTS = 2
INDEX_DIR_ENV = "ADAPTWISE_INDEX_DIR"
RETRIEVAL_MODES = ("dense", "hybrid")


@dataclass(frozen=True)
class RagSettings:
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    k: int = DEFAULT_K
    shots: int = DEFAULT_SHOTS  # worked examples (train question + its passage + answer)
    index: str = "auto"  # auto | exact | ivf
    retrieval: str = "hybrid"  # hybrid (BM25 + dense, reciprocal rank fusion) | dense
    max_document_mb: float | None = None
    index_dir: str | None = None  # relative to the task file


_TYPES = {
    "chunk_tokens": int,
    "overlap_tokens": int,
    "k": int,
    "shots": int,
    "index": str,
    "retrieval": str,
    "max_document_mb": (int, float),
    "index_dir": str,
}


def rag_settings(task: Task) -> RagSettings:
    """The task's `rag:` settings; a wrong key or value is a TaskError naming the task file."""
    raw = dict(task.settings.get("rag") or {})
    for key, value in raw.items():
        if key not in _TYPES:
            raise TaskError(
                f"{task.path}: unknown rag setting {key!r}; allowed: {', '.join(sorted(_TYPES))}"
            )
        if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
            raise TaskError(f"{task.path}: rag.{key} has the wrong type ({value!r})")
    settings = RagSettings(**raw)
    if settings.k < 1:
        raise TaskError(f"{task.path}: rag.k must be at least 1")
    if settings.shots < 0:
        raise TaskError(f"{task.path}: rag.shots must be 0 or more")
    if settings.index not in ("auto", "exact", "ivf"):
        raise TaskError(f"{task.path}: rag.index must be auto, exact or ivf")
    if settings.retrieval not in RETRIEVAL_MODES:
        raise TaskError(f"{task.path}: rag.retrieval must be one of {', '.join(RETRIEVAL_MODES)}")
    return settings


def index_location(task: Task, settings: RagSettings, override: Path | None = None) -> Path:
    """Where the task's index lives: --index-dir, else $ADAPTWISE_INDEX_DIR/<task name>, else
    rag.index_dir, else `.adaptwise/index` next to the task file."""
    if override is not None:
        return Path(override)
    env = os.environ.get(INDEX_DIR_ENV)
    if env:
        return Path(env) / task.folder_name
    if settings.index_dir:
        return task.path.parent / settings.index_dir
    return task.path.parent / ".adaptwise" / "index"
