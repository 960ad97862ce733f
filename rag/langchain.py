"""The task index as a LangChain retriever, to drop into an existing chain."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class IndexRetriever(BaseRetriever):
    """Returns the top-k chunks as Documents with id, document id, span and score metadata."""

    index: Any  # rag.store.RagIndex
    k: int = 3
    mode: str = "dense"

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.index.search([query], self.k, self.mode)[0]
        return [
            Document(
                page_content=h.chunk.text,
                id=h.chunk.id,
                metadata={
                    "doc_id": h.chunk.doc_id,
                    "start": h.chunk.start,
                    "end": h.chunk.end,
                    "score": h.score,
                    "rank": h.rank,
                },
            )
            for h in hits
        ]
