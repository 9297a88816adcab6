"""The answer reader: MiniLM fine-tuned as a cross-encoder, reading the question against one candidate sentence.

The sentence scorer (rag.answering.scoring) sees terms and vectors computed apart; the reader sees the question and
the sentence in one sequence, token by token, so it can tell a rephrasing that answers from a sentence that only
shares the question's words. It is run on the few best candidates only. Its weights are low-rank adapters over the
wheel's MiniLM (rag/answering/reader_weights.npz, written by benchmarks/train_reader.py from SQuAD's tuning
articles), added to the base weights once at load, plus a linear head on the mean-pooled token states.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.embedding import adapted_encoder, encode_pair_ids, pad_ids
from rag.minilm import NumpyMiniLM, OnnxMiniLM

WEIGHTS = Path(__file__).with_name("reader_weights.npz")
# The linear maps of each layer that carry adapters (names inside encoder.layer.N).
LORA_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
MAX_PAIR_TOKENS = 96
MAX_QUESTION_TOKENS = 40


def pair_ids(question: str, sentence: str) -> list[int]:
    """The reader's input for one pair: [CLS] question [SEP] sentence [SEP], capped at MAX_PAIR_TOKENS."""
    return encode_pair_ids(question, sentence, max_tokens=MAX_PAIR_TOKENS, max_first=MAX_QUESTION_TOKENS)


def load_deltas(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Full-size weight deltas (B @ A for each adapter), and the head's weights and bias."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    deltas = {}
    for key in arrays:
        if key.endswith(".lora_a"):
            name = key[: -len(".lora_a")]
            b = arrays[name + ".lora_b"].astype(np.float32)
            deltas[name + ".weight"] = b @ arrays[key].astype(np.float32)
    return deltas, arrays["head.weight"].astype(np.float32), float(arrays["head.bias"].reshape(-1)[0])


class Reader:
    """Logits (higher: the sentence answers the question) for (question, sentence) pairs."""

    def __init__(self, path: Path = WEIGHTS, *, backend: str = "auto") -> None:
        self.path = path
        self.backend = backend
        self._encoder: NumpyMiniLM | OnnxMiniLM | None = None
        self._head = np.zeros(0, dtype=np.float32)
        self._bias = 0.0
        self._lock = threading.Lock()

    @classmethod
    def available(cls, path: Path = WEIGHTS) -> bool:
        return path.is_file()

    def load(self) -> None:
        """Build the adapted encoder now (idempotent, thread-safe; about a second)."""
        if self._encoder is not None:
            return
        with self._lock:
            if self._encoder is None:
                deltas, self._head, self._bias = load_deltas(self.path)
                self._encoder = adapted_encoder(deltas, backend=self.backend)

    def logits(self, question: str, sentences: list[str]) -> np.ndarray:
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        self.load()
        assert self._encoder is not None
        ids, mask = pad_ids([pair_ids(question, s) for s in sentences])
        hidden = self._encoder.hidden(ids, mask)
        m = mask.astype(np.float32)[:, :, None]
        pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return np.asarray(pooled @ self._head + self._bias, dtype=np.float32)


@lru_cache(maxsize=1)
def default_reader() -> Reader | None:
    """The committed reader, one per process (shared by every tenant), or None where its weights are absent."""
    return Reader() if Reader.available() else None
