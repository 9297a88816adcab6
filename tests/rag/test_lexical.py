"""The incremental BM25 index: the same scores as one built from scratch, updated by the changed documents only,
caught up from the store's change log by another replica, and restarted from its cache."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from rag.retrieval.bm25 import BM25Index
from rag.retrieval.lexical import LexicalIndex, LexicalSide, build_index, load_index, save_index
from rag.store import ChromaStore, IndexedDocument
from rag.types import Chunk, Document
from tests.conftest import stored_chunks

WORDS = (
    "reactor salt molten thorium uranium cooling pump valve river delta farm harvest wheat barley storm rain flood "
    "court judge appeal verdict ship harbour cargo crane bridge tunnel rail signal engine piston"
).split()
QUERIES = ["molten salt reactor", "river flood storm", "judge appeal", "cargo ship harbour crane", "wheat", "tunnel"]


def _doc(rng: random.Random, doc_id: str, chunks: int, title: str = "") -> IndexedDocument:
    parts, start = [], 0
    for i in range(chunks):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
        parts.append((f"{doc_id}:{i}:{rng.random()}", text, start))
        start += len(text) + 1
    return IndexedDocument(doc_id, f"h{rng.random()}", title, (), parts)


def _scratch(docs: dict[str, IndexedDocument]) -> tuple[list[str], BM25Index]:
    """The reference: rag.retrieval.bm25's index built from scratch over the current chunks (titles included)."""
    ids, texts = [], []
    for doc in docs.values():
        for chunk_id, text, start in doc.chunks:
            ids.append(chunk_id)
            texts.append(f"{doc.title}\n\n{text}" if doc.title and start > 0 else text)
    return ids, BM25Index(texts)


def _assert_same(index: LexicalIndex, docs: dict[str, IndexedDocument]) -> None:
    assert index.size == sum(len(d.chunks) for d in docs.values())
    assert index.doc_hashes == {d: doc.content_hash for d, doc in docs.items()}
    ids, reference = _scratch(docs)
    for query in QUERIES:
        expected = {cid: float(s) for cid, s in zip(ids, reference.scores(query), strict=True) if s > 0}
        got = {cid: score for cid, _, score in index.top(query, 10**6)}
        assert got.keys() == expected.keys(), query
        for cid, score in expected.items():
            assert got[cid] == pytest.approx(score, rel=1e-4, abs=1e-5), (query, cid)
    for term in ("reactor", "wheat", "zebrafish", "absent"):
        assert index.idf_of(term) == pytest.approx(reference.idf_of(term), rel=1e-5), term


def test_updates_and_deletes_give_the_scores_of_an_index_built_from_scratch() -> None:
    """Random writes, replacements and deletes, with merges along the way: after each step every query scores every
    chunk exactly as a BM25 index built from scratch over the current chunks does (document frequencies, chunk count
    and mean length of the live chunks only)."""
    rng = random.Random(7)
    docs: dict[str, IndexedDocument] = {f"d{i}": _doc(rng, f"d{i}", rng.randint(1, 6)) for i in range(30)}
    index = build_index(list(docs.values()), titles=True, generation=1)
    _assert_same(index, docs)
    merges = 0
    for step in range(60):
        change: dict[str, IndexedDocument | None] = {}
        for _ in range(rng.randint(1, 3)):
            doc_id = f"d{rng.randint(0, 40)}"
            if doc_id in docs and rng.random() < 0.3:
                change[doc_id] = None
            else:
                change[doc_id] = _doc(rng, doc_id, rng.randint(0, 5))
        index = index.apply(change, titles=True)
        for doc_id, doc in change.items():
            if doc is None:
                docs.pop(doc_id, None)
            else:
                docs[doc_id] = doc
        if index.needs_merge():
            index = index.merged()
            merges += 1
            assert len(index.segments) <= 2
        if step % 10 == 0:
            _assert_same(index, docs)
    _assert_same(index, docs)
    assert merges > 0, "the merge policy never ran: the test would not cover merged segments"


def test_titles_feed_bm25_for_chunks_after_the_first() -> None:
    rng = random.Random(1)
    doc = _doc(rng, "t", 3, title="Zebrafish regeneration")
    index = build_index([doc], titles=True, generation=1)
    hits = {cid for cid, _, _ in index.top("zebrafish", 10)}
    assert hits == {cid for cid, _, start in doc.chunks if start > 0}
    _assert_same(index, {"t": doc})


def test_the_cache_round_trips(tmp_path: Path) -> None:
    rng = random.Random(3)
    docs = {f"d{i}": _doc(rng, f"d{i}", 3) for i in range(10)}
    index = build_index(list(docs.values()), titles=True, generation=5)
    index = index.apply({"d1": None, "d2": _doc(rng, "d2", 2)}, titles=True)
    docs.pop("d1")
    docs["d2"] = index_doc = _doc(rng, "d2", 2)
    index = index.apply({"d2": index_doc}, titles=True)
    save_index(index, tmp_path / "c.npz", epoch="e", pointer=9, applied={"x": 8})
    cached = load_index(tmp_path / "c.npz")
    assert cached is not None and (cached.epoch, cached.pointer, cached.applied) == ("e", 9, {"x": 8})
    _assert_same(cached.index, docs)
    (tmp_path / "bad.npz").write_bytes(b"not a cache")
    assert load_index(tmp_path / "bad.npz") is None
    assert load_index(tmp_path / "missing.npz") is None


# --- against a real store --------------------------------------------------------------------------------------
def _write(store: ChromaStore, doc_id: str, text: str) -> None:
    doc = Document.from_text(doc_id=doc_id, source=doc_id, text=text)
    chunks = [
        Chunk(
            chunk_id=f"{doc_id}-{doc.content_hash[:8]}-{i}",
            doc_id=doc_id,
            source=doc_id,
            text=part,
            start=text.index(part),
            end=text.index(part) + len(part),
            index=i,
            content_hash=doc.content_hash,
        )
        for i, part in enumerate(text.split("\n\n"))
    ]
    vectors = np.random.default_rng(len(text)).normal(size=(len(chunks), 384)).astype(np.float32)
    store.replace_documents([(doc, chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))])


def _store(path: Path) -> ChromaStore:
    return ChromaStore(path=path / "chroma", collection="lexical")


def _ids(side: LexicalSide, query: str) -> set[str]:
    return {doc_id for _, doc_id, _ in side.current().top(query, 50)}


def test_another_replica_applies_the_changed_documents_only(tmp_path: Path) -> None:
    """Replica B learns of A's writes and deletes through the change log: no rebuild from the collection."""
    a, b = _store(tmp_path), _store(tmp_path)
    _write(a, "alpha", "Molten salt reactors run hot.\n\nThey use thorium.")
    side_a, side_b = LexicalSide(a), LexicalSide(b)
    assert _ids(side_a, "thorium") == _ids(side_b, "thorium") == {"alpha"}
    assert side_b.rebuilds == 1

    _write(a, "beta", "Barley harvest after the flood.\n\nThe river delta farms recovered.")
    # Read-your-writes: the writer's index holds its write when the write returns, before any question.
    assert "beta" in side_a._index.doc_hashes  # type: ignore[union-attr]
    assert _ids(side_a, "barley flood") == {"beta"}
    assert side_a.rebuilds == 1
    assert _ids(side_b, "barley flood") == {"beta"}
    _write(b, "alpha", "Alpha reactors were first tested in 1971.")
    assert _ids(side_a, "thorium") == set() and _ids(side_a, "1971") == {"alpha"}
    a.delete_document("beta")
    assert _ids(side_b, "barley") == set()
    assert side_a.rebuilds == side_b.rebuilds == 1, "a change must cost the changed documents, not a rebuild"
    # What the deltas made equals what a rebuild from the collection (paged, streamed) makes.
    _write(a, "gamma", "Storm and rain over the harbour.\n\nThe cargo ship waited for the crane.")
    fresh = LexicalSide(_store(tmp_path))
    for query in QUERIES:
        got = {c: pytest.approx(s, rel=1e-5) for c, _, s in side_b.current().top(query, 100)}
        assert {c: s for c, _, s in fresh.current().top(query, 100)} == got, query
    assert fresh.current().doc_hashes == side_b.current().doc_hashes


def test_a_restart_loads_the_cache_and_catches_up_from_the_log(tmp_path: Path) -> None:
    cache = tmp_path / "lexical.npz"
    store = _store(tmp_path)
    _write(store, "alpha", "Molten salt reactors run hot.\n\nThey use thorium.")
    first = LexicalSide(store, cache_path=cache)
    first.current()
    assert cache.exists(), "a rebuild without a refresher (rag ask) must leave its cache for the next process"
    # Written while the replica is down.
    _write(_store(tmp_path), "beta", "Barley harvest after the flood.")
    _store(tmp_path).delete_document("alpha")
    again = LexicalSide(_store(tmp_path), cache_path=cache)
    assert _ids(again, "barley") == {"beta"} and _ids(again, "thorium") == set()
    assert again.rebuilds == 0, "a valid cache must not be rebuilt from the collection"


def test_a_cache_of_another_store_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "lexical.npz"
    one = LexicalSide(_store(tmp_path / "one"), cache_path=cache)
    _write(one.store, "alpha", "Molten salt reactors run hot.")
    one.current()
    one.save()
    other = _store(tmp_path / "two")
    _write(other, "beta", "Barley harvest after the flood.")
    side = LexicalSide(other, cache_path=cache)
    assert _ids(side, "molten") == set() and _ids(side, "barley") == {"beta"}
    assert side.rebuilds == 1


def test_a_write_without_its_log_entry_is_found_by_reconcile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer killed between its write and its change-log entry: the next start's reconcile pass re-reads it."""
    store = _store(tmp_path)
    _write(store, "alpha", "Molten salt reactors run hot.")
    side = LexicalSide(_store(tmp_path))
    side.current()
    monkeypatch.setattr(ChromaStore, "bump_generation", lambda self, doc_ids=(): None)  # the crash: no entry
    _write(store, "alpha", "Alpha reactors were first tested in 1971.")
    monkeypatch.undo()
    assert _ids(side, "1971") == set()
    assert side.reconcile() == 1
    assert _ids(side, "1971") == {"alpha"}


def test_the_refresher_keeps_an_idle_replica_current(tmp_path: Path) -> None:
    """No question arrives at replica B: its refresher still applies A's write within a poll or two."""
    import time

    a = _store(tmp_path)
    _write(a, "alpha", "Molten salt reactors run hot.")
    side = LexicalSide(_store(tmp_path), poll_s=0.1)
    side.current()
    side.start()
    try:
        _write(a, "beta", "Barley harvest after the flood.")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "beta" not in side._index.doc_hashes:  # type: ignore[union-attr]
            time.sleep(0.02)
        assert "beta" in side._index.doc_hashes  # type: ignore[union-attr]
    finally:
        side.stop()


def test_chunk_text_lives_in_metadata_and_old_chunks_are_still_read(tmp_path: Path) -> None:
    """Chunk texts go into a metadata key, not Chroma's ``documents`` (which Chroma also indexes for full-text search,
    a third of the write); chunks written the old way, text in ``documents``, read the same everywhere."""
    store = _store(tmp_path)
    _write(store, "alpha", "Molten salt reactors run hot.\n\nThey use thorium.")
    _write(store, "beta", "Barley harvest after the flood.\n\nThe river delta farms recovered.")
    got = store._chunks.get(include=["documents", "metadatas", "embeddings"])  # noqa: SLF001
    assert got["documents"] == [None] * len(got["ids"]), "chunk texts were written to Chroma's documents"
    # Rewrite beta's chunks as a store written before this change holds them.
    old = [i for i, m in enumerate(got["metadatas"]) if m["doc_id"] == "beta"]
    texts = [got["metadatas"][i]["text"] for i in old]
    store._chunks.delete(ids=[got["ids"][i] for i in old])  # noqa: SLF001
    store._chunks.add(  # noqa: SLF001
        ids=[got["ids"][i] for i in old],
        embeddings=[got["embeddings"][i] for i in old],
        documents=texts,
        metadatas=[{k: v for k, v in got["metadatas"][i].items() if k != "text"} for i in old],
    )
    expected = {got["ids"][i]: got["metadatas"][i]["text"] for i in range(len(got["ids"]))}
    snapshot = stored_chunks(store)
    assert dict(zip(snapshot.ids, snapshot.texts, strict=True)) == expected
    assert all("text" not in m for m in snapshot.metadatas)
    assert {i: h.text for i, h in store.chunks_by_id(list(expected)).items()} == expected
    read = store.indexed_documents(["alpha", "beta"])
    assert {c: t for d in read.values() if d for c, t, _ in d.chunks} == expected
    hits = store.query(np.asarray(got["embeddings"][old[0]], dtype=np.float32), n=10)
    assert {h.chunk_id: h.text for h in hits} == expected and all("text" not in h.metadata for h in hits)
    assert _ids(LexicalSide(store), "barley") == {"beta"}
