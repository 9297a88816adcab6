"""The extractive answerer: picks the 1-3 sentences of the retrieved passages that best answer the question.

No language model: each candidate sentence is scored by its embedding similarity to the question, the share of
the question's (idf-weighted) content terms it contains, a cue for the kind of answer the question asks for
(a cause for "why", a date for "when", a number for "how many"), and the rank of its passage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rag.text import sentence_spans, terms, words
from rag.types import Citation, Passage

REFUSAL = "I could not find an answer to that in the indexed documents."

_CUES: list[tuple[re.Pattern[str], re.Pattern[str]]] = [
    (
        re.compile(r"^\s*(why|what (caused|led to|prompted)|how come)\b", re.I),
        re.compile(
            r"\b(because|due to|owing to|reaction to|response to|in order to|as a result|result of|caused by|"
            r"led to|lead to|reason|so that|since|thanks to|driven by|aimed at|motivated)\b",
            re.I,
        ),
    ),
    (
        re.compile(r"^\s*(when|what (year|date|day|month|time|century|decade))\b", re.I),
        re.compile(
            r"\b(1[0-9]{3}|20[0-9]{2}|january|february|march|april|may|june|july|august|september|october|"
            r"november|december|century|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
            r"yesterday|today|ago|later|earlier)\b",
            re.I,
        ),
    ),
    (
        re.compile(r"^\s*how (many|much|long|far|old|big|large|tall|often)\b", re.I),
        re.compile(
            r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|hundred|thousand|million|billion|dozen)\b", re.I
        ),
    ),
    (re.compile(r"^\s*(who|whom|whose)\b", re.I), re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+")),
    (re.compile(r"^\s*where\b", re.I), re.compile(r"\b(in|at|near|from) [A-Z]")),
]

W_COSINE = 0.55
W_LEXICAL = 0.35
W_CUE = 0.06
# A "why" question's answer rarely repeats the event's words; the cause is what matters.
W_CUE_WHY = 0.30
W_RANK = 0.04
EXTRA_SENTENCE_RATIO = 0.85
MAX_SENTENCES = 3


@dataclass(frozen=True)
class ScoredSentence:
    passage: Passage
    start: int  # offset in the document
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class Extract:
    answer: str
    no_answer: bool
    citations: list[Citation]
    best_score: float


class ExtractiveAnswerer:
    """Composes an answer from cited sentences; refuses when the best evidence scores below ``min_score``."""

    def __init__(
        self,
        *,
        embed: Callable[[list[str]], np.ndarray],
        idf: Callable[[str], float],
        min_score: float,
        max_sentences: int = MAX_SENTENCES,
        passages_considered: int = 5,
    ) -> None:
        self._embed = embed
        self._idf = idf
        self.min_score = min_score
        self.max_sentences = max_sentences
        self.passages_considered = passages_considered

    def score_sentences(
        self, question: str, passages: list[Passage], question_embedding: np.ndarray
    ) -> list[ScoredSentence]:
        """Every sentence of the best passages with its score, best first."""
        seen: set[tuple[str, int, int]] = set()
        candidates: list[tuple[Passage, int, int, str, int]] = []
        for rank, passage in enumerate(passages[: self.passages_considered]):
            for start, end in sentence_spans(passage.text):
                key = (passage.doc_id, passage.start + start, passage.start + end)
                if key in seen:
                    continue
                seen.add(key)
                candidates.append((passage, key[1], key[2], passage.text[start:end], rank))
        if not candidates:
            return []
        vectors = self._embed([c[3] for c in candidates])
        cosines = vectors @ question_embedding
        q_terms = set(terms(question))
        q_weight = sum(self._idf(t) for t in q_terms) or 1.0
        cue = _cue_for(question)
        w_cue = W_CUE_WHY if cue is _CUES[0][1] else W_CUE
        scored = []
        for (passage, start, end, text, rank), cosine in zip(candidates, cosines, strict=True):
            s_terms = set(terms(text))
            lexical = sum(self._idf(t) for t in q_terms & s_terms) / q_weight
            has_cue = 1.0 if cue is not None and cue.search(text) else 0.0
            # A heading-like fragment ("InSight Crime Analysis") is not an answer.
            short = 0.5 if len(words(text)) < 5 else 1.0
            score = short * (
                W_COSINE * max(float(cosine), 0.0) + W_LEXICAL * lexical + w_cue * has_cue + W_RANK / (rank + 1)
            )
            scored.append(ScoredSentence(passage, start, end, text, score))
        scored.sort(key=lambda s: (-s.score, s.passage.doc_id, s.start))
        return scored

    def answer(self, question: str, passages: list[Passage], question_embedding: np.ndarray) -> Extract:
        """Pick sentences, number citations by first appearance, or refuse."""
        scored = self.score_sentences(question, passages, question_embedding)
        if not scored or scored[0].score < self.min_score:
            best_score = scored[0].score if scored else 0.0
            return Extract(answer=REFUSAL, no_answer=True, citations=[], best_score=best_score)
        best = scored[0]
        chosen = [best]
        for sentence in scored[1:]:
            if len(chosen) >= self.max_sentences or sentence.score < best.score * EXTRA_SENTENCE_RATIO:
                break
            chosen.append(sentence)
        # Read in document order when the sentences come from one document; otherwise best first.
        if len({s.passage.doc_id for s in chosen}) == 1:
            chosen.sort(key=lambda s: s.start)
        citations = []
        parts = []
        for n, sentence in enumerate(chosen, start=1):
            citations.append(
                Citation(
                    n=n,
                    doc_id=sentence.passage.doc_id,
                    source=sentence.passage.source,
                    quote=sentence.text,
                    start=sentence.start,
                    end=sentence.end,
                    score=round(sentence.score, 4),
                )
            )
            parts.append(f"{' '.join(sentence.text.split())} [{n}]")
        return Extract(answer=" ".join(parts), no_answer=False, citations=citations, best_score=best.score)


def _cue_for(question: str) -> re.Pattern[str] | None:
    for asks, cue in _CUES:
        if asks.search(question):
            return cue
    return None
