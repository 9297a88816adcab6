"""Sentence-aware chunking with llama-index's SentenceSplitter, sized in the embedder's own word pieces."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

from rag.embedding import load_tokenizer
from rag.types import Chunk, Document

if TYPE_CHECKING:
    from llama_index.core.node_parser import SentenceSplitter


def _encode(text: str) -> list[int]:
    return list(load_tokenizer().encode(text, add_special_tokens=False).ids)


@lru_cache(maxsize=4)
def _splitter(chunk_tokens: int, overlap: int) -> SentenceSplitter:
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=overlap, tokenizer=_encode)


def chunk_id(doc_id: str, text: str, occurrence: int = 0) -> str:
    """Derived from the document id and the chunk's content (and its repeat count, for identical chunks)."""
    key = f"{doc_id}\x00{text}\x00{occurrence}" if occurrence else f"{doc_id}\x00{text}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def chunk_document(document: Document, *, chunk_tokens: int, overlap: int) -> list[Chunk]:
    """Split the document into chunks that fit the embedder, each with its exact offsets in document.text."""
    text = document.text
    pieces = _splitter(chunk_tokens, overlap).split_text(text)
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    cursor = 0
    for piece in pieces:
        start = _locate(text, piece, cursor)
        end = start + len(piece)
        occurrence = seen.get(piece, 0)
        seen[piece] = occurrence + 1
        chunks.append(
            Chunk(
                chunk_id=chunk_id(document.doc_id, piece, occurrence),
                doc_id=document.doc_id,
                source=document.source,
                text=piece,
                start=start,
                end=end,
                index=len(chunks),
                content_hash=document.content_hash,
            )
        )
        # The next chunk overlaps this one, so it starts after this one's start, not after its end.
        cursor = start + 1
    return chunks


def _locate(text: str, piece: str, cursor: int) -> int:
    start = text.find(piece, cursor)
    if start < 0:
        start = text.find(piece)
    if start < 0:
        # The splitter only cuts and strips, so every piece is a substring of the normalised text.
        raise ValueError(f"chunk not found in its document: {piece[:60]!r}")
    return start
