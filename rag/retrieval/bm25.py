"""A small BM25 (Okapi) index over chunk texts, as a sparse term-by-chunk weight matrix, built from scratch.

Retrieval uses the incremental index in rag.retrieval.lexical, which shares K1 and B; this one is the reference it
is tested against (tests/rag/test_lexical.py) and what benchmarks/bench_lexical.py times as the old per-write rebuild.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from rag.text import terms

K1 = 0.9
B = 0.4


class BM25Index:
    """Scores every chunk for a query in one sparse row-sum; built in one pass over the texts."""

    def __init__(self, texts: Sequence[str], *, k1: float = K1, b: float = B) -> None:
        self.size = len(texts)
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(self.size, dtype=np.float32)
        for col, text in enumerate(texts):
            counts = Counter(terms(text))
            lengths[col] = sum(counts.values())
            for term, count in counts.items():
                rows.append(vocab.setdefault(term, len(vocab)))
                cols.append(col)
                tfs.append(count)
        self.vocab = vocab
        avgdl = float(lengths.mean()) if self.size else 1.0
        tf = np.asarray(tfs, dtype=np.float32)
        col_idx = np.asarray(cols, dtype=np.int64)
        row_idx = np.asarray(rows, dtype=np.int64)
        df = np.bincount(row_idx, minlength=len(vocab)).astype(np.float32)
        # Lucene's idf: never negative, so very common terms still count a little.
        self.idf = np.log1p((self.size - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * lengths[col_idx] / max(avgdl, 1e-9))
        weights = self.idf[row_idx] * tf * (k1 + 1) / (tf + norm)
        self._matrix = sparse.csr_matrix((weights, (row_idx, col_idx)), shape=(len(vocab), self.size))

    def idf_of(self, term: str) -> float:
        """Inverse document frequency of a stemmed term (the maximum for an unseen one)."""
        idx = self.vocab.get(term)
        if idx is None:
            return math.log1p((self.size + 0.5) / 0.5) if self.size else 0.0
        return float(self.idf[idx])

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for ``query``."""
        ids = [self.vocab[t] for t in terms(query) if t in self.vocab]
        if not ids or not self.size:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._matrix[ids].sum(axis=0)).ravel()

    def top(self, query: str, n: int) -> list[tuple[int, float]]:
        """The ``n`` best (chunk position, score) pairs with a positive score."""
        scores = self.scores(query)
        if not scores.size:
            return []
        n = min(n, scores.size)
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(i), float(scores[i])) for i in best if scores[i] > 0]
