"""Split documents into chunks measured in tokens of the embedding model.

LangChain's RecursiveCharacterTextSplitter does the splitting (paragraphs, then lines, then
words). Its own `start_index` assumes the overlap is measured in characters, which is wrong for
a token length, so the character spans are located here instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from experiments.errors import TaskError
from rag.corpus import Document

# Measured on the demo QA task (docs/rag.md): short chunks keep the prompt small and the
# small model's attention on the one passage that answers.
DEFAULT_CHUNK_TOKENS = 64
DEFAULT_OVERLAP_TOKENS = 8


@dataclass(frozen=True)
class Chunk:
    id: str  # "<doc id>#<n>"
    doc_id: str
    start: int  # character span in the document: text == document.text[start:end]
    end: int
    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def make_splitter(tokenizer, chunk_tokens: int, overlap_tokens: int):
    """A RecursiveCharacterTextSplitter whose lengths are counted in `tokenizer` tokens."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if chunk_tokens < 8:
        raise TaskError(f"rag.chunk_tokens is {chunk_tokens}; use at least 8")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise TaskError(
            f"rag.overlap_tokens is {overlap_tokens}; use 0 up to less than chunk_tokens"
        )

    def length(text: str) -> int:
        return len(tokenizer.tokenize(text))

    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=length,
        keep_separator=True,  # pieces are joined with "", so each chunk is a substring
        strip_whitespace=True,
    )


def split_document(doc: Document, splitter) -> list[Chunk]:
    """The document's chunks in order, each with its character span."""
    chunks: list[Chunk] = []
    search_from = 0
    for piece in splitter.split_text(doc.text):
        start = doc.text.find(piece, search_from)
        if start < 0:  # cannot happen with keep_separator; guard the span invariant anyway
            raise TaskError(f"{doc.source}: chunk {len(chunks)} not found in the document text")
        end = start + len(piece)
        chunks.append(Chunk(f"{doc.id}#{len(chunks)}", doc.id, start, end, piece))
        search_from = start + 1  # chunks start strictly after each other, overlap or not
    return chunks


def split_corpus(docs: list[Document], splitter) -> list[Chunk]:
    return [chunk for doc in docs for chunk in split_document(doc, splitter)]
