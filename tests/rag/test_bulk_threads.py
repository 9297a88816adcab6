"""A server's bulk embedding leaves a core to questions: RAG_BULK_THREADS, or one fewer than the cores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.embedding import SMALL_BATCH, SentenceTransformerEmbedder
from rag.factory import build_embedder


def test_serving_defaults_to_one_core_fewer_and_indexing_to_all(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert build_embedder(settings, serving=True).bulk_threads == max(1, (os.cpu_count() or 1) - 1)
    assert build_embedder(settings).bulk_threads == 0
    assert build_embedder(settings.model_copy(update={"bulk_threads": 3}), serving=True).bulk_threads == 3


def test_bulk_threads_cap_torch_when_it_loads() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        embedder = SentenceTransformerEmbedder(device="cpu", bulk_threads=1)
        vectors = embedder.embed([f"sentence number {i} about the harbour" for i in range(SMALL_BATCH + 1)])
        assert vectors.shape == (SMALL_BATCH + 1, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
