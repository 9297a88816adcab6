"""Full reads of a collection by bucket range, not by offset (README "Growth").

Real Chroma (embedded in a temp dir, or the Chroma server under .ci/with-chroma-server), real indexing with the
real model. ``_PAGE`` is made small so that a few dozen documents are read in several bucket ranges (or pages).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from chromadb.api.models.Collection import Collection

import rag.store
from rag.factory import open_store
from rag.store import _BUCKETED, BUCKETS, ChromaStore, bucket_of
from tests.conftest import index_folder, make_settings, stored_chunks

PAGE = 16
WORDS = "river valley harbour tower garden bridge market castle forest meadow canal island mill quarry".split()


def _write_docs(folder: Path, first: int, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(first)
    for i in range(first, first + count):
        words = " ".join(rng.choice(WORDS) for _ in range(12))
        (folder / f"doc{i:03d}.txt").write_text(
            f"Document {i} is about the {WORDS[i % len(WORDS)]} of town {i}. It mentions {words}.\n", encoding="utf-8"
        )


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every Collection.get call (the real call still runs)."""
    calls: list[dict[str, Any]] = []
    real = Collection.get

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "get", spy)
    return calls


def _all_ids(collection: Any) -> list[str]:
    return list(collection.get(include=[])["ids"])


def _check_reads_every_row_once(store: ChromaStore) -> None:
    chunk_ids = _all_ids(store._chunks)  # noqa: SLF001
    doc_ids = _all_ids(store._docs)  # noqa: SLF001
    assert len(chunk_ids) > 3 * PAGE and len(doc_ids) > 3 * PAGE  # several pages / bucket ranges
    scanned = [i for ids, _, _ in store.scan_chunks() for i in ids]
    assert len(scanned) == len(chunk_ids) and set(scanned) == set(chunk_ids)
    snap = stored_chunks(store)
    assert len(snap.ids) == len(chunk_ids) and set(snap.ids) == set(chunk_ids)
    assert all("bucket" not in m for m in snap.metadatas)  # the store's own key stays inside the store
    listed = [d.doc_id for d in store.list_documents()]
    assert sorted(listed) == sorted(doc_ids)
    assert sum(store.chunk_census().values()) == len(chunk_ids)
    assert store.chunks_without_sentence_vectors() == []


def test_bucket_of_is_a_stable_hash_of_the_id() -> None:
    # sha1-based, not Python's salted hash(): every process and every version agree.
    assert bucket_of("a.txt#0") == 616 and bucket_of("doc-1") == 560
    assert {bucket_of(f"id{i}") for i in range(20_000)} == set(range(BUCKETS))


def test_bucketed_store_is_read_by_bucket_range_without_offsets(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch, gets: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(rag.store, "_PAGE", PAGE)
    _write_docs(tmp_path / "docs", 0, 70)
    settings = make_settings(tmp_path / "data")
    index_folder(settings, embedder, tmp_path / "docs")
    store = open_store(settings)
    assert (store._chunks.metadata or {}).get(_BUCKETED) == BUCKETS  # noqa: SLF001
    assert (store._docs.metadata or {}).get(_BUCKETED) == BUCKETS  # noqa: SLF001
    raw = store._chunks.get(include=["metadatas"])  # noqa: SLF001
    assert all(m["bucket"] == bucket_of(i) for i, m in zip(raw["ids"], raw["metadatas"], strict=True))
    records = store._docs.get(include=["metadatas"])  # noqa: SLF001
    assert all(m["bucket"] == bucket_of(i) for i, m in zip(records["ids"], records["metadatas"], strict=True))
    gets.clear()
    _check_reads_every_row_once(store)
    # Before the change every full read paged by offset: this fails there (offset=16, 32, ... on every read).
    assert [c for c in gets if c.get("offset")] == []
    ranged = [c for c in gets if "bucket" in str(c.get("where"))]
    assert len(ranged) >= 3 * 5  # each of the five reads went over several bucket ranges


def _old_collections(client: Any, name: str) -> tuple[Any, Any, Any, int]:
    """rag.store._collections as it was before buckets (no collection flag)."""
    chunks = client.get_or_create_collection(
        f"{name}-chunks", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    docs = client.get_or_create_collection(f"{name}-docs", embedding_function=None, metadata={"generation": 0})
    return client, chunks, docs, int(client.get_max_batch_size())


def _without_bucket(layout: Any) -> Any:
    def old(*args: Any) -> dict[str, Any]:
        meta = dict(layout(*args))
        meta.pop("bucket")
        return meta

    return old


def test_store_written_before_buckets_keeps_offset_paging_and_loses_nothing_after_upgrade(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rag.store, "_PAGE", PAGE)
    docs = tmp_path / "docs"
    settings = make_settings(tmp_path / "data")
    _write_docs(docs, 0, 50)
    with monkeypatch.context() as m:  # the previous version writes the store
        m.setattr(rag.store, "_collections", _old_collections)
        m.setattr(rag.store, "_chunk_meta", _without_bucket(rag.store._chunk_meta))  # noqa: SLF001
        m.setattr(rag.store, "record_meta", _without_bucket(rag.store.record_meta))
        index_folder(settings, embedder, docs)
        old = open_store(settings)
        assert not any("bucket" in (x or {}) for x in old._chunks.get(include=["metadatas"])["metadatas"])  # noqa: SLF001
        del old
    # This version opens it: the collections stay unflagged (offset paging), and every row is read once.
    store = open_store(settings)
    assert _BUCKETED not in (store._chunks.metadata or {}) and _BUCKETED not in (store._docs.metadata or {})  # noqa: SLF001
    _check_reads_every_row_once(store)
    # Mixed writes after the upgrade: new documents and a rewritten old one (with buckets) beside old rows.
    _write_docs(docs, 50, 30)
    (docs / "doc007.txt").write_text("Document 7 now tells of a lighthouse on the cliffs.\n", encoding="utf-8")
    index_folder(settings, embedder, docs)
    store = open_store(settings)
    metas = store._chunks.get(include=["metadatas"])["metadatas"]  # noqa: SLF001
    assert 0 < sum("bucket" in (x or {}) for x in metas) < len(metas)  # really mixed
    _check_reads_every_row_once(store)
    assert len(store.list_documents()) == 80


def test_rows_an_earlier_version_adds_to_a_bucketed_store_are_still_read(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README says to upgrade every replica together; a replica of the earlier version writing anyway (rows without
    a bucket in a flagged collection) loses nothing: the read notices fewer rows than the count and reads them."""
    monkeypatch.setattr(rag.store, "_PAGE", PAGE)
    docs = tmp_path / "docs"
    settings = make_settings(tmp_path / "data")
    _write_docs(docs, 0, 60)
    index_folder(settings, embedder, docs)
    _write_docs(docs, 60, 10)
    with monkeypatch.context() as m:  # an old replica's write: rows without a bucket (the collection exists)
        m.setattr(rag.store, "_chunk_meta", _without_bucket(rag.store._chunk_meta))  # noqa: SLF001
        m.setattr(rag.store, "record_meta", _without_bucket(rag.store.record_meta))
        index_folder(settings, embedder, docs)
    store = open_store(settings)
    assert (store._chunks.metadata or {}).get(_BUCKETED) == BUCKETS  # noqa: SLF001
    metas = store._chunks.get(include=["metadatas"])["metadatas"]  # noqa: SLF001
    assert sum("bucket" not in (x or {}) for x in metas) >= 10
    _check_reads_every_row_once(store)


def test_a_full_read_misses_no_row_when_others_are_deleted_during_it(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offset page after a delete starts past rows it never returned (every later row moves up): a BM25 rebuild
    read while a replica deletes documents lost chunks of documents nobody touched. A row's bucket never changes, so
    a bucket-range read returns every row that exists throughout it. Fails on offset paging (16 rows missed)."""
    monkeypatch.setattr(rag.store, "_PAGE", PAGE)
    _write_docs(tmp_path / "docs", 0, 70)
    settings = make_settings(tmp_path / "data")
    index_folder(settings, embedder, tmp_path / "docs")
    store = open_store(settings)
    before = set(_all_ids(store._chunks))  # noqa: SLF001
    pages = store.scan_chunks()
    first_ids, _, first_metas = next(pages)
    for doc_id in {str(m["doc_id"]) for m in first_metas}:  # documents the read has already passed
        assert store.delete_document(doc_id)
    rest = [i for ids, _, _ in pages for i in ids]
    kept = set(_all_ids(store._chunks))  # noqa: SLF001
    assert kept and kept < before
    assert kept - set(first_ids) - set(rest) == set()
    assert len(rest) == len(set(rest))
