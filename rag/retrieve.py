"""Hybrid retrieval: dense (Chroma) and BM25 over the same chunks, fused by weighted reciprocal rank."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rag.bm25 import BM25Index
from rag.store import ChromaStore, ChunkSnapshot
from rag.types import Passage

RRF_K = 60
CANDIDATES = 50


class Embedder(Protocol):
    def embed_query(self, text: str) -> np.ndarray: ...

    def embed(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray: ...


@dataclass
class _Lexical:
    snapshot: ChunkSnapshot
    bm25: BM25Index
    position: dict[str, int]


class HybridRetriever:
    """Fuses Chroma's nearest neighbours with BM25; the BM25 side is rebuilt whenever the store's generation moves."""

    def __init__(
        self,
        *,
        store: ChromaStore,
        embedder: Embedder,
        rrf_k: int = RRF_K,
        candidates: int = CANDIDATES,
        dense_weight: float = 1.0,
        bm25_weight: float = 1.0,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.bm25_weight = bm25_weight
        self._lexical: _Lexical | None = None
        self._lock = threading.Lock()

    def lexical(self) -> _Lexical:
        """The BM25 side, rebuilt from the store if another writer (or process) changed it."""
        generation = self.store.generation()
        current = self._lexical
        if current is not None and current.snapshot.generation == generation:
            return current
        with self._lock:
            current = self._lexical
            if current is None or current.snapshot.generation != generation:
                snapshot = self.store.snapshot()
                current = _Lexical(
                    snapshot=snapshot,
                    bm25=BM25Index(snapshot.texts),
                    position={cid: i for i, cid in enumerate(snapshot.ids)},
                )
                self._lexical = current
        return current

    def retrieve(self, question: str, *, top_k: int, query_embedding: np.ndarray | None = None) -> list[Passage]:
        """The ``top_k`` best chunks for ``question``, best first."""
        lexical = self.lexical()
        if query_embedding is None:
            query_embedding = self.embedder.embed_query(question)
        pool = max(self.candidates, top_k)
        dense = self.store.query(query_embedding, n=pool)
        sparse_hits = lexical.bm25.top(question, pool)
        hashes = lexical.snapshot.doc_hashes

        fused: dict[str, float] = {}
        found: dict[str, dict[str, Any]] = {}
        for rank, hit in enumerate(dense):
            # Only chunks of the document's current version count: never a mix of old and new chunks.
            if hashes.get(str(hit.metadata.get("doc_id"))) != hit.metadata.get("content_hash"):
                continue
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + self.dense_weight / (self.rrf_k + rank + 1)
            found[hit.chunk_id] = {"text": hit.text, "meta": hit.metadata, "dense": hit.similarity}
        snap = lexical.snapshot
        for rank, (pos, score) in enumerate(sparse_hits):
            chunk_id, meta = snap.ids[pos], snap.metadatas[pos]
            if hashes.get(str(meta.get("doc_id"))) != meta.get("content_hash"):
                continue
            fused[chunk_id] = fused.get(chunk_id, 0.0) + self.bm25_weight / (self.rrf_k + rank + 1)
            entry = found.setdefault(chunk_id, {"text": snap.texts[pos], "meta": meta})
            entry["bm25"] = score

        best = sorted(fused, key=lambda cid: (-fused[cid], cid))[:top_k]
        return [_passage(cid, found[cid], fused[cid]) for cid in best]


def _passage(chunk_id: str, entry: dict[str, Any], score: float) -> Passage:
    meta = entry["meta"]
    return Passage(
        chunk_id=chunk_id,
        doc_id=str(meta["doc_id"]),
        source=str(meta.get("source", "")),
        start=int(meta["start"]),
        end=int(meta["end"]),
        text=entry["text"],
        score=score,
        dense_score=entry.get("dense"),
        bm25_score=entry.get("bm25"),
    )
