"""Synthetic collections from a real index: jittered copies of its embedded chunks (the scaling curve in
bench_query and the growth benchmark in bench_scale), so that 10^4-10^6 chunks need no hour-long embedding.

Each copy of a base chunk keeps its text, offsets and stored sentence vectors, belongs to a new document (the base
document's text under ``<doc_id>#<copy>``), and gets the base chunk's vector plus N(0, 0.01) noise, renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.factory import open_store
from rag.store import chunk_texts
from rag.types import Chunk, Document

JITTER = 0.01


@dataclass(frozen=True)
class Base:
    """Every chunk of the base index, with what a copy needs."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    vectors: np.ndarray  # (chunks, dim) float32
    sentence_vectors: dict[str, np.ndarray]  # chunk id -> its stored in-context sentence vectors
    doc_texts: dict[str, str]

    def __len__(self) -> int:
        return len(self.ids)


def read_base(data_dir: Path) -> Base:
    """Read the whole base index (small: the SQuAD corpus is 2,540 chunks)."""
    store = open_store(Settings(data_dir=Path(data_dir)))
    got = store._chunks.get(include=["documents", "metadatas", "embeddings"])  # noqa: SLF001
    ids = list(got["ids"])
    hits = store.chunks_by_id(ids)
    sentence_vectors = {i: h.sentence_vectors for i, h in hits.items() if h.sentence_vectors is not None}
    doc_texts = {}
    for info in store.list_documents():
        full = store.get_document(info.doc_id)
        assert full is not None
        doc_texts[info.doc_id] = full.text
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    return Base(ids, chunk_texts(got), list(got["metadatas"]), vectors, sentence_vectors, doc_texts)


def copy_batch(
    base: Base, copy: int, take: int, rng: np.random.Generator
) -> list[tuple[Document, list[Chunk], np.ndarray]]:
    """Copy number ``copy`` of the base's first ``take`` chunks, grouped by document, ready for
    ``ChromaStore.replace_documents``."""
    items: dict[str, tuple[Document, list[Chunk], list[int]]] = {}
    for j in range(take):
        meta = base.metadatas[j]
        doc_id = f"{meta['doc_id']}#{copy}"
        if doc_id not in items:
            doc = Document(
                doc_id=doc_id,
                source=f"copy{copy}/{meta['doc_id']}",
                text=base.doc_texts[str(meta["doc_id"])],
                content_hash=f"{copy}-{meta['content_hash']}",
            )
            items[doc_id] = (doc, [], [])
        doc, chunks, rows = items[doc_id]
        chunks.append(
            Chunk(
                chunk_id=f"{base.ids[j]}-{copy}",
                doc_id=doc_id,
                source=doc.source,
                text=base.texts[j],
                start=int(meta["start"]),
                end=int(meta["end"]),
                index=int(meta["index"]),
                content_hash=doc.content_hash,
                sentence_vectors=base.sentence_vectors.get(base.ids[j]),
            )
        )
        rows.append(j)
    batch = []
    for doc, chunks, rows in items.values():
        v = base.vectors[rows] + rng.normal(0, JITTER, (len(rows), base.vectors.shape[1])).astype(np.float32)
        batch.append((doc, chunks, v / np.linalg.norm(v, axis=1, keepdims=True)))
    return batch
