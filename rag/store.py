"""The only place that speaks to Chroma.

Two collections per tenant: ``<name>-chunks`` (chunk text, embedding, offsets) and ``<name>-docs`` (the full
normalised text of each document, its source and content hash). The docs collection's metadata holds a
``generation`` counter, bumped after every change, so derived local state (the BM25 index) notices staleness.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import StoreUnavailable
from rag.types import Chunk, Document, DocumentInfo

log = logging.getLogger(__name__)

_GENERATION = "generation"
_PLACEHOLDER = [0.0]  # the docs collection stores text, not vectors; Chroma still wants one per record
_PAGE = 2000


@dataclass(frozen=True)
class DenseHit:
    chunk_id: str
    text: str
    metadata: dict[str, Any]
    similarity: float


@dataclass(frozen=True)
class ChunkSnapshot:
    """Every chunk of a collection (ids, texts, metadata) at one generation: the input of the BM25 index."""

    generation: int
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    doc_hashes: dict[str, str]


class ChromaStore:
    """Chunks, embeddings and document texts of one tenant's collection."""

    def __init__(self, *, path: Path | None = None, url: str | None = None, collection: str) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        with _translate_errors():
            if url:
                from urllib.parse import urlparse

                parsed = urlparse(url)
                self._client = chromadb.HttpClient(
                    host=parsed.hostname or "127.0.0.1",
                    port=parsed.port or 8000,
                    ssl=parsed.scheme == "https",
                    settings=chroma_settings,
                )
            else:
                assert path is not None, "either path or url"
                path.mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            self._chunks = self._client.get_or_create_collection(
                f"{collection}-chunks", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
            self._docs = self._client.get_or_create_collection(
                f"{collection}-docs", embedding_function=None, metadata={_GENERATION: 0}
            )
            self._max_batch = int(self._client.get_max_batch_size())

    # --- reads ---------------------------------------------------------------------------------------------
    def generation(self) -> int:
        """The change counter; any write bumps it."""
        with _translate_errors():
            meta = self._client.get_collection(self._docs.name, embedding_function=None).metadata or {}
        return int(meta.get(_GENERATION, 0))

    def count_chunks(self) -> int:
        with _translate_errors():
            return int(self._chunks.count())

    def count_documents(self) -> int:
        with _translate_errors():
            return int(self._docs.count())

    def list_documents(self) -> list[DocumentInfo]:
        """Every document, without its text, sorted by id."""
        infos: list[DocumentInfo] = []
        with _translate_errors():
            for offset in range(0, self._docs.count(), _PAGE):
                got = self._docs.get(include=["metadatas"], limit=_PAGE, offset=offset)
                infos.extend(_info(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True))
        return sorted(infos, key=lambda info: info.doc_id)

    def get_document(self, doc_id: str, *, with_text: bool = True) -> DocumentInfo | None:
        """One document (with its normalised text), or None."""
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        with _translate_errors():
            got = self._docs.get(ids=[doc_id], include=include)
        if not got["ids"]:
            return None
        info = _info(got["ids"][0], (got["metadatas"] or [{}])[0])
        if with_text:
            info.text = (got["documents"] or [""])[0]
        return info

    def document_hashes(self) -> dict[str, tuple[str, str]]:
        """doc_id -> (content_hash, root) for every document."""
        return {d.doc_id: (d.content_hash, d.root) for d in self.list_documents()}

    def chunk_ids_of(self, doc_id: str) -> list[str]:
        with _translate_errors():
            return list(self._chunks.get(where={"doc_id": doc_id}, include=[])["ids"])

    def snapshot(self) -> ChunkSnapshot:
        """All chunks and the current document hashes, read at one generation."""
        while True:
            generation = self.generation()
            ids: list[str] = []
            texts: list[str] = []
            metas: list[dict[str, Any]] = []
            with _translate_errors():
                total = self._chunks.count()
                for offset in range(0, total, _PAGE):
                    got = self._chunks.get(include=["documents", "metadatas"], limit=_PAGE, offset=offset)
                    ids.extend(got["ids"])
                    texts.extend(got["documents"] or [])
                    metas.extend(dict(m) for m in got["metadatas"] or [])
            hashes = {d.doc_id: d.content_hash for d in self.list_documents()}
            if self.generation() == generation:
                return ChunkSnapshot(generation, ids, texts, metas, hashes)

    def query(self, embedding: np.ndarray, *, n: int) -> list[DenseHit]:
        """Nearest chunks by cosine similarity."""
        with _translate_errors():
            count = self._chunks.count()
            if count == 0:
                return []
            got = self._chunks.query(
                query_embeddings=[embedding.tolist()],
                n_results=min(n, count),
                include=["documents", "metadatas", "distances"],
            )
        return [
            DenseHit(chunk_id=i, text=t, metadata=dict(m), similarity=1.0 - float(d))
            for i, t, m, d in zip(
                got["ids"][0],
                (got["documents"] or [[]])[0],
                (got["metadatas"] or [[]])[0],
                (got["distances"] or [[]])[0],
                strict=True,
            )
        ]

    # --- writes --------------------------------------------------------------------------------------------
    def replace_document(self, document: Document, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        """Make ``chunks`` the document's only chunks.

        Order matters for crash safety and for readers: new chunks are upserted first (ids are content-derived,
        so a rerun is idempotent), then the document record switches to the new content hash (retrieval only
        shows chunks whose hash matches the record), then stale chunks are deleted.
        """
        old_ids = set(self.chunk_ids_of(document.doc_id))
        with _translate_errors():
            for lo in range(0, len(chunks), self._max_batch):
                batch = chunks[lo : lo + self._max_batch]
                self._chunks.upsert(
                    ids=[c.chunk_id for c in batch],
                    embeddings=embeddings[lo : lo + len(batch)],
                    documents=[c.text for c in batch],
                    metadatas=[_chunk_meta(c, document) for c in batch],
                )
            self._docs.upsert(
                ids=[document.doc_id],
                embeddings=[_PLACEHOLDER],
                documents=[document.text],
                metadatas=[
                    {
                        "source": document.source,
                        "root": document.root,
                        "title": document.title,
                        "content_hash": document.content_hash,
                        "chunks": len(chunks),
                    }
                ],
            )
            stale = sorted(old_ids - {c.chunk_id for c in chunks})
            for lo in range(0, len(stale), self._max_batch):
                self._chunks.delete(ids=stale[lo : lo + self._max_batch])
        self.bump_generation()

    def replace_documents(self, items: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]]) -> None:
        """``replace_document`` for many documents at once: the same order of writes, in a few large calls.

        All new chunks are upserted first, then the document records switch hashes, then stale chunks go, then
        the generation moves once. A crash at any point leaves what a crash in ``replace_document`` leaves.
        """
        if not items:
            return
        doc_ids = [d.doc_id for d, _, _ in items]
        with _translate_errors():
            old = self._chunks.get(where={"doc_id": {"$in": doc_ids}}, include=[])["ids"] if doc_ids else []
            chunks = [c for _, cs, _ in items for c in cs]
            metas = [_chunk_meta(c, d) for d, cs, _ in items for c in cs]
            vectors = np.concatenate([v for _, cs, v in items if len(cs)] or [np.zeros((0, 1), np.float32)])
            for lo in range(0, len(chunks), self._max_batch):
                batch = chunks[lo : lo + self._max_batch]
                self._chunks.upsert(
                    ids=[c.chunk_id for c in batch],
                    embeddings=vectors[lo : lo + len(batch)],
                    documents=[c.text for c in batch],
                    metadatas=metas[lo : lo + len(batch)],
                )
            for lo in range(0, len(items), self._max_batch):
                group = items[lo : lo + self._max_batch]
                self._docs.upsert(
                    ids=[d.doc_id for d, _, _ in group],
                    embeddings=[_PLACEHOLDER for _ in group],
                    documents=[d.text for d, _, _ in group],
                    metadatas=[
                        {
                            "source": d.source,
                            "root": d.root,
                            "title": d.title,
                            "content_hash": d.content_hash,
                            "chunks": len(cs),
                        }
                        for d, cs, _ in group
                    ],
                )
            stale = sorted(set(old) - {c.chunk_id for c in chunks})
            for lo in range(0, len(stale), self._max_batch):
                self._chunks.delete(ids=stale[lo : lo + self._max_batch])
        self.bump_generation()

    def delete_document(self, doc_id: str) -> bool:
        """Remove a document and its chunks; False if it was not there."""
        with _translate_errors():
            existed = bool(self._docs.get(ids=[doc_id], include=[])["ids"])
            # Record first, chunks second: a crash in between leaves orphan chunks that retrieval ignores
            # (no record, so no matching hash) and the next index run deletes.
            self._docs.delete(ids=[doc_id])
            ids = self.chunk_ids_of(doc_id)
            for lo in range(0, len(ids), self._max_batch):
                self._chunks.delete(ids=ids[lo : lo + self._max_batch])
        if existed or ids:
            self.bump_generation()
        return existed

    def orphan_doc_ids(self) -> set[str]:
        """Doc ids that have chunks but no document record (left by an interrupted delete)."""
        with _translate_errors():
            metas = self._chunks.get(include=["metadatas"])["metadatas"] or []
        known = {d.doc_id for d in self.list_documents()}
        return {str(m["doc_id"]) for m in metas} - known

    def bump_generation(self) -> None:
        with _translate_errors():
            docs = self._client.get_collection(self._docs.name, embedding_function=None)
            meta = dict(docs.metadata or {})
            meta[_GENERATION] = int(meta.get(_GENERATION, 0)) + 1
            docs.modify(metadata=meta)


def _chunk_meta(chunk: Chunk, document: Document) -> dict[str, Any]:
    return {
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "start": chunk.start,
        "end": chunk.end,
        "index": chunk.index,
        "content_hash": document.content_hash,
    }


def _info(doc_id: str, meta: Any) -> DocumentInfo:
    meta = dict(meta or {})
    return DocumentInfo(
        doc_id=doc_id,
        source=str(meta.get("source", "")),
        content_hash=str(meta.get("content_hash", "")),
        chunks=int(meta.get("chunks", 0)),
        root=str(meta.get("root", "")),
        title=str(meta.get("title", "")),
    )


@contextmanager
def _translate_errors() -> Iterator[None]:
    """Turn 'the Chroma server is not there' into StoreUnavailable; let everything else propagate."""
    try:
        yield
    except (ConnectionError, OSError) as exc:
        raise StoreUnavailable(f"the vector store is unreachable: {exc}") from exc
    except Exception as exc:
        name = type(exc).__name__
        if (
            name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"}
            or "connect" in str(exc).lower()
        ):
            raise StoreUnavailable(f"the vector store is unreachable: {exc}") from exc
        raise
