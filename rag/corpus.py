"""Load a task's corpus (a folder of .txt/.md files or a JSONL of {"id","text"}) and check it.

Every problem is a TaskError naming the file (and line) and what to change, so the CLI prints
one line and exits with status 2.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import TaskError

SUFFIXES = (".txt", ".md")
# A document is read whole and then split; chunking and tokenising need a few copies of it.
MEMORY_FACTOR = 8
DEFAULT_MAX_DOCUMENT_MB = 200.0


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    source: str  # file, or file:line for JSONL rows

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_corpus(path: Path | None, max_document_mb: float | None = None) -> list[Document]:
    """All non-empty documents of the corpus, in a stable order (file name, or JSONL order).

    Args:
        path: a folder of .txt/.md files (ids are the file names without suffix; links to
            files outside the folder are skipped) or a JSONL file of {"id", "text"} objects.
        max_document_mb: refuse larger documents (default: 200 MB, and never more than
            1/8 of the memory available now).
    """
    if path is None:
        raise TaskError("the task has no corpus; add `corpus: docs/` (or a .jsonl) to use RAG")
    limit = _byte_limit(max_document_mb)
    if path.is_dir():
        docs = _load_folder(path, limit)
    elif path.is_file():
        docs = _load_jsonl(path, limit)
    else:
        raise TaskError(f"{path}: corpus not found")
    if not docs:
        raise TaskError(
            f"{path}: the corpus is empty; add .txt/.md files (or JSONL rows with a non-empty "
            '"text")'
        )
    return docs


def _byte_limit(max_document_mb: float | None) -> int:
    mb = DEFAULT_MAX_DOCUMENT_MB if max_document_mb is None else float(max_document_mb)
    limit = int(mb * 1024 * 1024)
    available = _available_memory()
    if available:
        limit = min(limit, available // MEMORY_FACTOR)
    return limit


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _too_large(where: str, size: int, limit: int) -> TaskError:
    return TaskError(
        f"{where}: document of {size / 1e6:.1f} MB is larger than the {limit / 1e6:.1f} MB "
        "memory allows (rag.max_document_mb or free memory / 8); split it into smaller files"
    )


def links_outside(folder: Path) -> list[Path]:
    """The corpus files that are symbolic links to something outside the corpus folder: they
    are not read (nothing outside the folders the user named is), and `index` says so."""
    root = folder.resolve()
    return [
        file
        for file in sorted(folder.iterdir())
        if file.is_symlink()
        and file.suffix.lower() in SUFFIXES
        and root not in file.resolve().parents
    ]


def _load_folder(folder: Path, limit: int) -> list[Document]:
    docs = []
    outside = set(links_outside(folder))
    for file in sorted(folder.iterdir()):
        if file.suffix.lower() not in SUFFIXES or file.name.startswith(".") or file in outside:
            continue
        try:
            size = file.stat().st_size
            if size > limit:
                raise _too_large(str(file), size, limit)
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TaskError(
                f"{file}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise TaskError(f"{file}: cannot be read ({exc.strerror or exc})") from None
        if text.strip():
            docs.append(Document(file.stem, text, str(file)))
    return docs


def _load_jsonl(path: Path, limit: int) -> list[Document]:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _too_large(str(path), size, limit)
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise TaskError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    docs, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(
                f'{where}: not valid JSON ({exc.msg}); one {{"id","text"}} per line'
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise TaskError(f'{where}: expected an object with a string "text" (and an "id")')
        doc_id = str(obj.get("id", f"{path.stem}-{number}"))
        if doc_id in seen:
            raise TaskError(f"{where}: duplicate id {doc_id!r}; document ids must be unique")
        seen.add(doc_id)
        if obj["text"].strip():
            docs.append(Document(doc_id, obj["text"], where))
    return docs


def check_context_ids(docs: list[Document], rows: list, corpus: Path) -> None:
    """Every `context_ids` entry must name a document (JSONL corpora are checked only here)."""
    known = {d.id for d in docs}
    for row in rows:
        for cid in row.context_ids:
            if cid not in known:
                raise TaskError(f"{row.source}: context id {cid!r} names no document in {corpus}")
