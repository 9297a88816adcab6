"""Backfilling sentence vectors: an index written before they were stored gets them from the next `rag index`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import index.pipeline
from index.pipeline import Indexer
from rag.embedding import SentenceTransformerEmbedder
from rag.factory import open_store
from rag.store import ChromaStore, DenseHit, encode_vectors
from rag.text import sentence_spans
from rag.types import Document
from tests.conftest import copy_seeds, make_settings

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
BETA = "Beta gardens grow purple tomatoes. The tomatoes ripen in late September. Nobody eats them."


@pytest.fixture
def indexer(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Indexer:
    # Small chunks, so the seed article alone gives a dozen, several of them with more than one sentence.
    return Indexer(
        store=open_store(make_settings(tmp_path / "data")), embedder=embedder, chunk_tokens=48, chunk_overlap=8
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = copy_seeds(tmp_path / "docs")
    (docs / "alpha.txt").write_text(ALPHA)
    return docs


def _records(store: ChromaStore) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """chunk id -> (embedding, metadata) as Chroma holds them."""
    got = store._chunks.get(include=["embeddings", "metadatas"])
    return {
        i: (np.asarray(e), dict(m)) for i, e, m in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True)
    }


def _hits(store: ChromaStore) -> list[DenseHit]:
    """Every chunk as a dense query returns it (the answerer's view: sentence vectors decoded, or None)."""
    return store.query(np.ones(384, dtype=np.float32) / np.sqrt(384), n=store.count_chunks())


def _make_old(store: ChromaStore, *, wrong_count: int = 0) -> None:
    """Turn the store into one written by an older version: no sentence vectors in any chunk's metadata.

    The first ``wrong_count`` chunks with several sentences keep one vector only (another sentence splitter's
    count), which the answerer ignores just like a missing one.
    """
    hits = _hits(store)
    several = [h for h in hits if h.sentence_vectors is not None and len(h.sentence_vectors) > 1][:wrong_count]
    assert len(several) == wrong_count
    ids = [h.chunk_id for h in hits]
    # A direct Chroma update of the store's private metadata key: this is what an old index looks like on disk.
    store._chunks.update(ids=ids, metadatas=[{"sentence_vectors": None} for _ in ids])
    if several:
        store._chunks.update(
            ids=[h.chunk_id for h in several],
            metadatas=[{"sentence_vectors": encode_vectors(h.sentence_vectors[:1])} for h in several],
        )


def _assert_vectors_match_embed_chunks(store: ChromaStore, embedder: SentenceTransformerEmbedder) -> None:
    hits = _hits(store)
    texts = [h.text for h in hits]
    _, fresh = embedder.embed_chunks(texts, [sentence_spans(t) for t in texts])
    for hit, expected in zip(hits, fresh, strict=True):
        assert hit.sentence_vectors is not None, hit.chunk_id
        assert hit.sentence_vectors.shape == (len(sentence_spans(hit.text)), 384)
        np.testing.assert_allclose(hit.sentence_vectors, expected, atol=2e-3)


def test_index_paths_old_index_backfills_every_chunk_and_nothing_else(
    indexer: Indexer, folder: Path, embedder: SentenceTransformerEmbedder
) -> None:
    indexer.index_paths([folder])
    before = _records(indexer.store)
    _make_old(indexer.store, wrong_count=2)
    assert sum(h.sentence_vectors is None for h in _hits(indexer.store)) == len(before) - 2
    generation = indexer.store.generation()

    report = indexer.index_paths([folder])

    _assert_vectors_match_embed_chunks(indexer.store, embedder)
    after = _records(indexer.store)
    assert after.keys() == before.keys()
    for chunk_id, (embedding, meta) in after.items():
        old_embedding, old_meta = before[chunk_id]
        np.testing.assert_array_equal(embedding, old_embedding)  # the chunk embedding is exactly as stored
        assert {k: v for k, v in meta.items() if k != "sentence_vectors"} == {
            k: v for k, v in old_meta.items() if k != "sentence_vectors"
        }
    assert report.backfilled == len(before)
    assert f"backfilled={len(before)}" in report.summary()
    assert (report.added, report.updated, report.unchanged, report.removed, report.chunks) == (0, 0, 2, 0, 0)
    # Replicas need no rebuild: the BM25 snapshot holds no sentence vectors and dense queries read them live.
    assert indexer.store.generation() == generation

    again = indexer.index_paths([folder])
    assert again.backfilled == 0 and "backfilled=0" in again.summary()


def test_index_paths_backfills_the_whole_collection_not_only_the_folder(
    indexer: Indexer, folder: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    indexer.index_paths([folder])
    # A document uploaded over the API: no folder any `rag index PATH` could reach it through.
    indexer.ingest(Document.from_text(doc_id="uploaded/beta", source="upload", text=BETA))
    _make_old(indexer.store)
    other = tmp_path / "other"
    other.mkdir()

    report = indexer.index_paths([other])

    assert report.backfilled == indexer.store.count_chunks()
    _assert_vectors_match_embed_chunks(indexer.store, embedder)


def test_backfill_interrupted_midway_is_finished_by_the_next_run(
    indexer: Indexer, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer.index_paths([folder])
    _make_old(indexer.store)
    total = indexer.store.count_chunks()
    monkeypatch.setattr(index.pipeline, "BACKFILL_CHUNKS", 3)
    real_write = indexer.store.set_sentence_vectors
    writes = 0

    def dies_on_the_third_write(ids: list[str], vectors: list[np.ndarray]) -> None:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise KeyboardInterrupt  # as if the process were stopped between two batches
        real_write(ids, vectors)

    monkeypatch.setattr(indexer.store, "set_sentence_vectors", dies_on_the_third_write)
    with pytest.raises(KeyboardInterrupt):
        indexer.index_paths([folder])
    with_vectors = sum(h.sentence_vectors is not None for h in _hits(indexer.store))
    assert with_vectors == 6  # two whole batches, not a chunk more or less

    monkeypatch.setattr(indexer.store, "set_sentence_vectors", real_write)
    assert indexer.index_paths([folder]).backfilled == total - 6
    assert indexer.index_paths([folder]).backfilled == 0
