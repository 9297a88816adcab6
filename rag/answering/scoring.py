"""The fitted models of the extractive answerer: which sentence answers, and how likely the answer is right.

Both are small and live in rag/answering/answer_weights.py, written by benchmarks/train_answerer.py from SQuAD's
tuning articles (never the report half). The sentence scorer is a linear model (optionally with one hidden layer)
over rag.answering.features.SENTENCE_FEATURES, fitted with a softmax over each question's candidates; the
confidence is a logistic output over ANSWER_FEATURES (directly, or through one tanh layer: the form with the lower
validation log loss), fitted on answerable questions (label: a sentence the answer cites, as
rag.answering.extractive.answer_sentences chooses them, holds a reference answer) and unanswerable ones (label 0)
of several populations pooled (SQuAD's wording, rephrased, "Who is X?", single-article indexes, SciFact's claims),
and checked for calibration on held-out articles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.answering import answer_weights
from rag.answering.features import ANSWER_FEATURES, SENTENCE_FEATURES


@dataclass(frozen=True)
class Layer:
    """An affine map over standardised inputs, optionally followed by tanh and a second affine map."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (features,) for a linear model, (features, hidden) with a hidden layer
    bias: float | np.ndarray
    out_weights: np.ndarray | None = None
    out_bias: float = 0.0

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Layer:
        out = spec.get("out_weights")
        return cls(
            mean=np.asarray(spec["mean"], dtype=np.float32),
            scale=np.asarray(spec["scale"], dtype=np.float32),
            weights=np.asarray(spec["weights"], dtype=np.float32),
            bias=np.asarray(spec["bias"], dtype=np.float32) if isinstance(spec["bias"], list) else float(spec["bias"]),
            out_weights=None if out is None else np.asarray(out, dtype=np.float32),
            out_bias=float(spec.get("out_bias", 0.0)),
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        h = z @ self.weights + self.bias
        if self.out_weights is None:
            return np.asarray(h, dtype=np.float32)
        return np.asarray(np.tanh(h) @ self.out_weights + self.out_bias, dtype=np.float32)


READER_FEATURES = ("reader_chosen", "reader_max", "reader_margin", "reader_first")
# Candidates the reader did not read fall this far below the read ones: the answer is chosen among the read.
UNREAD_PENALTY = 50.0


@dataclass(frozen=True)
class ReaderUse:
    """How the reader's logits join the sentence scorer's (fitted with them by benchmarks/train_answerer.py)."""

    candidates: int  # the scorer's best few sentences that the reader reads
    weight: float  # combined logit = scorer logit + weight * reader logit
    confidence: Layer  # over ANSWER_FEATURES + READER_FEATURES
    extra_sentence_ratio: float
    min_confidence: float

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> ReaderUse:
        return cls(
            candidates=int(spec["candidates"]),
            weight=float(spec["weight"]),
            confidence=Layer.from_dict(spec["confidence"]),
            extra_sentence_ratio=float(spec["extra_sentence_ratio"]),
            min_confidence=float(spec["min_confidence"]),
        )


def read_candidates(logits: np.ndarray, candidates: int) -> np.ndarray:
    """Indices of the sentences the reader reads: the scorer's best ``candidates``, best first."""
    return np.argsort(-logits, kind="stable")[:candidates]


def combine(logits: np.ndarray, read: np.ndarray, reader_logits: np.ndarray, weight: float) -> np.ndarray:
    """Combined logits: the read sentences get ``weight`` x the reader's logit; the unread drop below them."""
    out = logits - UNREAD_PENALTY
    out[read] = logits[read] + weight * reader_logits
    return np.asarray(out, dtype=np.float32)


def reader_features(combined: np.ndarray, read: np.ndarray, reader_logits: np.ndarray) -> np.ndarray:
    """READER_FEATURES: the reader's logit for the chosen sentence, its best, its margin, and for the scorer's best."""
    row = np.zeros(len(READER_FEATURES), dtype=np.float32)
    if not len(read):
        return row
    chosen = int(np.argmax(combined[read]))
    ranked = np.sort(reader_logits)[::-1]
    row[0] = reader_logits[chosen]
    row[1] = ranked[0]
    row[2] = ranked[0] - ranked[1] if len(ranked) > 1 else 5.0
    row[3] = reader_logits[0]
    return row


class AnswerModel:
    """Scores candidate sentences (logits) and turns an answer's evidence into a probability of being right."""

    def __init__(
        self,
        *,
        sentence: Layer,
        confidence: Layer,
        extra_sentence_ratio: float,
        min_confidence: float,
        reader: ReaderUse | None = None,
    ) -> None:
        self.sentence = sentence
        self.confidence_layer = confidence
        self.extra_sentence_ratio = extra_sentence_ratio
        # The operating point chosen with the fit (balanced accuracy on held-out articles); RAG_MIN_CONFIDENCE
        # overrides it.
        self.min_confidence = min_confidence
        self.reader = reader  # how to use the reader, when it runs

    @classmethod
    def default(cls) -> AnswerModel:
        """The model fitted by benchmarks/train_answerer.py and committed with it."""
        if (
            tuple(answer_weights.SENTENCE_FEATURES) != SENTENCE_FEATURES
            or tuple(answer_weights.ANSWER_FEATURES) != ANSWER_FEATURES
        ):
            raise ImportError("rag/answering/answer_weights.py was fitted on other features: run make train-answerer")
        return cls(
            sentence=Layer.from_dict(answer_weights.SENTENCE_MODEL),
            confidence=Layer.from_dict(answer_weights.CONFIDENCE_MODEL),
            extra_sentence_ratio=answer_weights.EXTRA_SENTENCE_RATIO,
            min_confidence=answer_weights.MIN_CONFIDENCE,
            reader=ReaderUse.from_dict(answer_weights.READER) if getattr(answer_weights, "READER", None) else None,
        )

    def sentence_logits(self, features: np.ndarray) -> np.ndarray:
        """One logit per candidate row."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.sentence(features)

    def confidence(self, features: np.ndarray, layer: Layer | None = None) -> float:
        """P(the answer is right) from one row of ANSWER_FEATURES (+ READER_FEATURES with the reader's ``layer``)."""
        logit = float((layer or self.confidence_layer)(features[None, :])[0])
        return float(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))
