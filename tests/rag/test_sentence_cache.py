"""The answerer's sentence-embedding cache returns exactly what the embedder returns, and reuses it."""

from __future__ import annotations

import numpy as np

from rag.service import EmbeddingCache


def test_embedding_cache_returns_embedder_vectors_and_reuses_them(embedder) -> None:  # type: ignore[no-untyped-def]
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return embedder.embed(texts)

    cache = EmbeddingCache(embed, max_items=3)
    texts = ["The tomatoes ripen in September.", "Alpha reactors run on salt.", "The tomatoes ripen in September."]
    first = cache(texts)
    assert calls == [["The tomatoes ripen in September.", "Alpha reactors run on salt."]]
    np.testing.assert_allclose(first, embedder.embed(texts), atol=1e-6)
    second = cache(["Alpha reactors run on salt.", "Beta gardens grow purple tomatoes."])
    assert calls[-1] == ["Beta gardens grow purple tomatoes."]
    np.testing.assert_allclose(second[0], first[1], atol=0)
    assert (cache.hits, cache.misses) == (2, 3)
    cache(["one", "two", "three"])  # evicts the least recently used
    cache(["The tomatoes ripen in September."])
    assert calls[-1] == ["The tomatoes ripen in September."]
    assert cache([]).shape == (0, 384)
