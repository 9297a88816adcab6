"""Score fusion of the dense and BM25 lists, on hand-made lists."""

from __future__ import annotations

import pytest

from rag.retrieve import HybridRetriever


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
