"""The persisted index of a task's corpus: build or refresh it, reload it, search it.

Folder layout (see `rag.settings.index_location`):
    index.json            metadata: model, settings, document hashes, chunks, index info
    index-<digest>.faiss  the FAISS index named by its content digest
    embeddings/           the chunk-vector cache (rag.embed_cache)
index.json is written last and names its FAISS file, so an interrupted build leaves the
previous index whole. Nothing here is pickled.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from experiments.atomic import write_bytes_atomic, write_text_atomic
from experiments.errors import AdaptwiseError
from experiments.owned_files import MANIFEST, claim, manifest_text, plain_name, read_manifest
from experiments.task import Task
from rag import index as faiss_index
from rag.chunking import Chunk, make_splitter, split_corpus
from rag.corpus import check_context_ids, links_outside, load_corpus
from rag.embed_cache import EmbeddingCache
from rag.settings import RagSettings, index_location, rag_settings

FORMAT_VERSION = 1
META = "index.json"
INDEX_COMMAND = "index"
Progress = Callable[[int, int], None]


@dataclass
class Hit:
    chunk: Chunk
    score: float
    rank: int  # 1-based


@dataclass
class BuildStats:
    built: bool = False  # False: reloaded as it was
    n_docs: int = 0
    n_chunks: int = 0
    embedded: int = 0  # chunks embedded in this run (the rest came from the cache)
    chunk_s: float = 0.0
    embed_s: float = 0.0
    index_s: float = 0.0
    total_s: float = 0.0
    size_bytes: int = 0
    extra: dict = field(default_factory=dict)


class RagIndex:
    """Chunks, their FAISS index and the embedder that made them."""

    def __init__(self, folder: Path, chunks: list[Chunk], index, info: dict, embedder) -> None:
        self.folder = folder
        self.chunks = chunks
        self.index = index
        self.info = info
        self.embedder = embedder
        self._bm25 = None

    def search(
        self, queries: list[str], k: int, mode: str = "dense", encoder=None
    ) -> list[list[Hit]]:
        """Top-k chunks per query, best first. `encoder` (a QuestionEncoder) embeds the queries
        instead of the index's embedder, so that a question shared with the example selector
        is embedded once."""
        vectors = (encoder or self.embedder).encode(list(queries))
        if mode == "hybrid":
            return self._hybrid(queries, vectors, k)
        scores, ids = faiss_index.search(self.index, vectors, k)
        return [
            [
                Hit(self.chunks[i], float(s), rank)
                for rank, (i, s) in enumerate(((i, s) for i, s in zip(row_i, row_s) if i >= 0), 1)
            ]
            for row_i, row_s in zip(ids.tolist(), scores.tolist())
        ]

    def _hybrid(self, queries: list[str], vectors: np.ndarray, k: int) -> list[list[Hit]]:
        from rag.bm25 import BM25, reciprocal_rank_fusion

        if self._bm25 is None:
            self._bm25 = BM25([c.text for c in self.chunks])
        depth = max(50, k)
        _, dense_ids = faiss_index.search(self.index, vectors, depth)
        out = []
        for query, dense in zip(queries, dense_ids.tolist()):
            sparse = self._bm25.top(query, depth)
            fused = reciprocal_rank_fusion([[i for i in dense if i >= 0], sparse])[:k]
            out.append([Hit(self.chunks[i], s, r) for r, (i, s) in enumerate(fused, 1)])
        return out

    def as_langchain(self, k: int = 3, mode: str = "dense"):
        """This index as a LangChain `BaseRetriever`."""
        from rag.langchain import IndexRetriever

        return IndexRetriever(index=self, k=k, mode=mode)


def embedding_tokenizer(embedder):
    """The embedding model's tokenizer, without loading the model where it can be avoided."""
    if embedder.model is None:
        from transformers import AutoTokenizer

        from experiments.embeddings import embedded_model_path

        return AutoTokenizer.from_pretrained(str(embedded_model_path()))
    return embedder._load().tokenizer  # a user-named model: its own tokenizer


def open_index(
    task: Task,
    embedder,
    location: Path | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
    settings: RagSettings | None = None,
) -> tuple[RagIndex, BuildStats]:
    """Reload the task's index if it matches the corpus, else build it (embedding only new
    chunks). `rebuild` replaces an index made with another model or a damaged one."""
    started = time.perf_counter()
    settings = settings or rag_settings(task)
    folder = index_location(task, settings, location)
    if folder.exists() and not folder.is_dir():
        raise AdaptwiseError(f"{folder}: exists and is not a folder; choose another --index-dir")
    docs = load_corpus(task.corpus, settings.max_document_mb)
    check_context_ids(docs, task.train + task.eval, task.corpus)
    skipped_links = [str(p) for p in links_outside(task.corpus)] if task.corpus.is_dir() else []
    wanted = {
        "model": embedder.name,
        "chunk_tokens": settings.chunk_tokens,
        "overlap_tokens": settings.overlap_tokens,
        "index": settings.index,
        "docs": {d.id: d.sha for d in docs},
    }
    meta = None if rebuild else _read_meta(folder)
    if meta is not None and meta["model"] != embedder.name:
        raise AdaptwiseError(
            f"{folder}: the index was built with embedding model {meta['model']!r}, not "
            f"{embedder.name!r}; pass --embedder {meta['model']} or rebuild it with "
            "`adaptwise index TASK.yaml --rebuild`"
        )
    if meta is not None and all(meta.get(key) == value for key, value in wanted.items()):
        index = _load_faiss(folder, meta)
        chunks = _chunks(folder, meta)
        stats = BuildStats(
            n_docs=len(docs),
            n_chunks=len(chunks),
            size_bytes=(folder / meta["faiss_file"]).stat().st_size,
            total_s=time.perf_counter() - started,
            extra={"skipped_links": skipped_links},
        )
        return RagIndex(folder, chunks, index, meta["index_info"], embedder), stats

    stats = BuildStats(built=True, n_docs=len(docs), extra={"skipped_links": skipped_links})
    _claim_folder(folder)
    mark = time.perf_counter()
    chunks = split_corpus(
        docs,
        make_splitter(
            embedding_tokenizer(embedder), settings.chunk_tokens, settings.overlap_tokens
        ),
    )
    stats.chunk_s = time.perf_counter() - mark
    mark = time.perf_counter()
    cache = EmbeddingCache(folder / "embeddings", embedder.name)
    vectors, stats.embedded = cache.embed(
        [c.text for c in chunks], [c.sha for c in chunks], embedder.encode, progress
    )
    stats.embed_s = time.perf_counter() - mark
    mark = time.perf_counter()
    tuning = None
    if settings.index == "ivf" or (
        settings.index == "auto" and len(chunks) > faiss_index.EXACT_MAX_VECTORS
    ):
        # Real questions tune the IVF probe count better than synthetic stand-ins.
        tuning = embedder.encode([r.text for r in task.train[:300]])
    index, info = faiss_index.build_index(vectors, settings.index, queries=tuning)
    stats.index_s = time.perf_counter() - mark
    data = faiss_index.serialize(index)
    stats.n_chunks, stats.size_bytes = len(chunks), len(data)
    info_dict = asdict(info)
    _save(folder, wanted, chunks, data, info_dict, stats)
    stats.total_s = time.perf_counter() - started
    return RagIndex(folder, chunks, index, info_dict, embedder), stats


def load_index(folder: Path, embedder) -> RagIndex:
    """An index folder as it is, without its corpus (an exported recipe ships one): the same
    checks of its metadata, FAISS file and embedding model as `open_index`'s reload."""
    meta = _read_meta(Path(folder))
    if meta is None:
        raise AdaptwiseError(f"{folder}: no {META}; not an adaptwise index folder")
    if meta["model"] != embedder.name:
        raise AdaptwiseError(
            f"{folder}: the index was built with embedding model {meta['model']!r}, not "
            f"{embedder.name!r}"
        )
    chunks, index = _chunks(folder, meta), _load_faiss(folder, meta)
    return RagIndex(Path(folder), chunks, index, meta["index_info"], embedder)


def _claim_folder(folder: Path) -> None:
    """Mark the index folder's files as adaptwise's before writing any (experiments/owned_files.py).
    An index folder of an earlier version has no manifest: its index.json, readable as an
    index's and naming its FAISS file, is adaptwise's own."""
    old = _read_meta_quietly(folder)
    if old and read_manifest(folder) is None:
        owned = [META, old, "embeddings", ".gitignore"]
        write_text_atomic(folder / MANIFEST, manifest_text(INDEX_COMMAND, owned))
    ignore = folder / ".gitignore"
    claim(folder, INDEX_COMMAND, [META, "embeddings"])
    if not ignore.exists():
        claim(folder, INDEX_COMMAND, [".gitignore"])
        write_text_atomic(ignore, "# built by adaptwise index; safe to delete\n*\n")


def _read_meta(folder: Path) -> dict | None:
    path = folder / META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('version')!r}")
        for key in ("model", "chunks", "faiss_file", "faiss_sha256", "index_info"):
            meta[key]  # noqa: B018 - KeyError names the missing field
        if plain_name(meta["faiss_file"], "index-", ".faiss") is None:
            raise ValueError(f"faiss_file {meta['faiss_file']!r} is not a plain file name")
        if not isinstance(meta["chunks"], list) or not all(
            isinstance(c, dict) for c in meta["chunks"]
        ):
            raise ValueError("chunks is not a list of objects")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AdaptwiseError(
            f"{path}: the index metadata is corrupted ({type(exc).__name__}: {exc}); "
            "rebuild it with `adaptwise index TASK.yaml --rebuild`"
        ) from None
    return meta


def _chunks(folder: Path, meta: dict) -> list[Chunk]:
    try:
        chunks = [Chunk(**c) for c in meta["chunks"]]
        if not all(isinstance(c.text, str) and isinstance(c.id, str) for c in chunks):
            raise TypeError("a chunk's id or text is not a string")
    except TypeError as exc:
        raise AdaptwiseError(
            f"{folder / META}: the index metadata is corrupted (chunks: {exc}); rebuild it "
            "with `adaptwise index TASK.yaml --rebuild`"
        ) from None
    return chunks


def _load_faiss(folder: Path, meta: dict):
    path = folder / meta["faiss_file"]
    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["faiss_sha256"]:
            raise ValueError("its checksum does not match index.json")
        index = faiss_index.deserialize(data)
        if index.ntotal != len(meta["chunks"]):
            raise ValueError(f"{index.ntotal} vectors for {len(meta['chunks'])} chunks")
    except (OSError, ValueError) as exc:
        raise AdaptwiseError(
            f"{path}: the index file is corrupted ({exc}); rebuild it with "
            "`adaptwise index TASK.yaml --rebuild`"
        ) from None
    return index


def _save(
    folder: Path, wanted: dict, chunks: list[Chunk], data: bytes, info: dict, stats: BuildStats
) -> None:
    digest = hashlib.sha256(data).hexdigest()
    old = _read_meta_quietly(folder)
    faiss_file = f"index-{digest[:16]}.faiss"
    claim(folder, INDEX_COMMAND, [faiss_file])
    write_bytes_atomic(folder / faiss_file, data)
    meta = {
        "version": FORMAT_VERSION,
        **wanted,
        "faiss_file": faiss_file,
        "faiss_sha256": digest,
        "index_info": info,
        "build": {
            "embedded": stats.embedded,
            "chunk_s": round(stats.chunk_s, 3),
            "embed_s": round(stats.embed_s, 3),
            "index_s": round(stats.index_s, 3),
        },
        "chunks": [asdict(c) for c in chunks],
    }
    write_text_atomic(folder / META, json.dumps(meta, ensure_ascii=False))
    if old and old != faiss_file:
        (folder / old).unlink(missing_ok=True)


def _read_meta_quietly(folder: Path) -> str | None:
    try:
        name = json.loads((folder / META).read_text(encoding="utf-8")).get("faiss_file")
        return plain_name(name, "index-", ".faiss")
    except (OSError, ValueError, AttributeError):
        return None
