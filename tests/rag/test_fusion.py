"""Score fusion of the dense and BM25 lists, on hand-made lists."""

from __future__ import annotations

import pytest

from rag.retrieval.hybrid import HybridRetriever
from rag.types import Document


def _retriever(**kwargs: object) -> HybridRetriever:
    return HybridRetriever(store=None, embedder=None, **kwargs)  # type: ignore[arg-type]


def test_convex_fusion_min_max_normalises_each_list() -> None:
    fused = dict(_retriever(candidates=3)._contributions([("a", 0.9), ("b", 0.7), ("c", 0.5), ("d", 0.1)], 2.0))
    # Normalised over the first `candidates` (0.5..0.9); a deeper chunk gets nothing, never less than nothing.
    assert fused == pytest.approx({"a": 2.0, "b": 1.0, "c": 0.0, "d": 0.0})


def test_convex_fusion_single_candidate_counts_fully() -> None:
    assert _retriever()._contributions([("a", 3.2)], 1.0) == [("a", 1.0)]
    assert _retriever()._contributions([], 1.0) == []


def test_rrf_fusion_uses_ranks_only() -> None:
    fused = _retriever(fusion="rrf", rrf_k=60)._contributions([("a", 100.0), ("b", 0.1)], 1.0)
    assert fused == [("a", pytest.approx(1 / 61)), ("b", pytest.approx(1 / 62))]


def test_unknown_fusion_is_rejected() -> None:
    with pytest.raises(ValueError, match="fusion"):
        _retriever(fusion="max")


def test_bm25_reads_later_chunks_with_their_document_title(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    from index.pipeline import Indexer
    from rag.factory import open_store
    from tests.conftest import make_settings, stored_chunks

    settings = make_settings(tmp_path / "data")
    store = open_store(settings)
    indexer = Indexer(store=store, embedder=embedder, chunk_tokens=64, chunk_overlap=0)
    body = " ".join(f"Sentence {i} talks about fins, cells and growth after an injury." for i in range(30))
    indexer.put(
        Document.from_text(
            doc_id="d1", source="d1", text=f"Zebrafish regeneration\n\n{body}", title="Zebrafish regeneration"
        )
    )
    snapshot = stored_chunks(store)
    assert len(snapshot.ids) > 2
    later = [cid for cid, m in zip(snapshot.ids, snapshot.metadatas, strict=True) if m["start"] > 0]
    n = len(snapshot.ids)
    with_titles = {c: s for c, _, s in HybridRetriever(store=store, embedder=embedder).lexical().top("zebrafish", n)}
    lexical = HybridRetriever(store=store, embedder=embedder, bm25_titles=False).lexical()
    without = {c: s for c, _, s in lexical.top("zebrafish", n)}
    assert later and all(with_titles.get(c, 0) > 0 for c in later)
    assert all(c not in without for c in later)
    # The passages keep the chunk's own text: the title only feeds BM25.
    passages = HybridRetriever(store=store, embedder=embedder).retrieve("zebrafish", top_k=len(snapshot.ids))
    assert {p.text for p in passages} <= set(snapshot.texts)


def test_retrieve_skips_a_dense_hit_caught_mid_delete(seeded_settings, embedder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A Chroma server can return a chunk that is being deleted with no metadata and no text (seen in CI while a
    replacement raced /ask). It is no current chunk: retrieval drops it instead of failing the question."""
    from rag.factory import open_store
    from rag.store import DenseHit

    store = open_store(seeded_settings)
    retriever = HybridRetriever(store=store, embedder=embedder)
    question = "Why did the VRAEM faction attack in February?"
    real_query = store.query

    def query_with_a_ghost(embedding, *, n):  # type: ignore[no-untyped-def]
        ghost = DenseHit(chunk_id="ghost", text=None, metadata={}, similarity=0.99)  # type: ignore[arg-type]
        return [ghost, *real_query(embedding, n=n)]

    monkeypatch.setattr(store, "query", query_with_a_ghost)
    passages = retriever.retrieve(question, top_k=5)
    assert passages and all(p.chunk_id != "ghost" for p in passages)
