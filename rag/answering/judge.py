"""The support judge: does a cited passage back a generated sentence?

No NLI model is reachable without a hub, so the judge is a logistic regression over evidence we can compute here:
the MiniLM cosine between the sentence and each sentence of the passage, the share of the sentence's content
terms (and their adjacent pairs) found there, whether its numbers appear there, and a negation mismatch. The
coefficients and the threshold are fitted on SciFact (claims against their SUPPORT evidence sentences versus the
other sentences of the same abstracts) by benchmarks/train_judge.py, which writes rag/answering/judge_weights.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answering import judge_weights
from rag.text import sentence_spans, terms, words

FEATURES = ("bias", "cosine", "term_recall", "pair_recall", "numbers_found", "numbers_missing", "negation_mismatch")

if tuple(judge_weights.FEATURES) != FEATURES:
    raise ImportError(
        "rag/answering/judge_weights.py was fitted on other features: rerun benchmarks/train_judge.py --write"
    )

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "without", "cannot", "fails", "fail"})


@dataclass(frozen=True)
class Evidence:
    """The best-supporting sentence of one passage for one claim; start/end are offsets in the passage text."""

    start: int
    end: int
    probability: float
    supported: bool


def numbers(text: str) -> set[str]:
    """Numbers written in ``text``, without thousands separators ("32,441" -> "32441")."""
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def _pairs(items: list[str]) -> set[tuple[str, str]]:
    return set(zip(items, items[1:], strict=False))


def _negated(text: str) -> bool:
    tokens = words(text)
    return any(t in _NEGATIONS or t.endswith("n't") for t in tokens)


def features(claim: str, sentence: str, cosine: float) -> list[float]:
    """The judge's feature vector for (claim, candidate evidence sentence), in the order of FEATURES."""
    c_terms = terms(claim)
    s_terms = terms(sentence)
    c_set, s_set = set(c_terms), set(s_terms)
    term_recall = len(c_set & s_set) / len(c_set) if c_set else 0.0
    c_pairs = _pairs(c_terms)
    pair_recall = len(c_pairs & _pairs(s_terms)) / len(c_pairs) if c_pairs else term_recall
    c_nums = numbers(claim)
    found = len(c_nums & numbers(sentence)) / len(c_nums) if c_nums else 1.0
    missing = 1.0 if c_nums and found < 1.0 else 0.0
    negation = 1.0 if _negated(claim) != _negated(sentence) else 0.0
    return [1.0, cosine, term_recall, pair_recall, found, missing, negation]


def probability(x: Sequence[float], coefficients: Sequence[float]) -> float:
    """Logistic probability of support for one feature vector."""
    z = sum(a * b for a, b in zip(x, coefficients, strict=True))
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


class SupportJudge:
    """Judges a claim against passages, sentence by sentence, with the SciFact-calibrated coefficients."""

    def __init__(
        self,
        *,
        embed: Callable[[list[str]], np.ndarray],
        coefficients: Sequence[float] = judge_weights.COEFFICIENTS,
        threshold: float = judge_weights.THRESHOLD,
    ) -> None:
        if len(coefficients) != len(FEATURES):
            raise ValueError(f"the judge needs {len(FEATURES)} coefficients, got {len(coefficients)}")
        self._embed = embed
        self.coefficients = list(coefficients)
        self.threshold = threshold

    def score_pairs(self, claim: str, sentences: list[str]) -> list[float]:
        """Support probability of ``claim`` by each of ``sentences``."""
        if not sentences:
            return []
        vectors = self._embed([claim, *sentences])
        cosines = vectors[1:] @ vectors[0]
        return [
            probability(features(claim, s, float(c)), self.coefficients)
            for s, c in zip(sentences, cosines, strict=True)
        ]

    def best_evidence(self, claim: str, passage_texts: list[str]) -> list[Evidence | None]:
        """For each passage, the sentence that best supports ``claim`` (None for an empty passage); one model call."""
        spans = [sentence_spans(text) for text in passage_texts]
        flat = [text[s:e] for text, sp in zip(passage_texts, spans, strict=True) for s, e in sp]
        scores = self.score_pairs(claim, flat)
        results: list[Evidence | None] = []
        i = 0
        for sp in spans:
            if not sp:
                results.append(None)
                continue
            chunk = scores[i : i + len(sp)]
            i += len(sp)
            best = int(np.argmax(chunk))
            p = chunk[best]
            results.append(Evidence(start=sp[best][0], end=sp[best][1], probability=p, supported=p >= self.threshold))
        return results
