"""What the learned answerer sees: features of a question, of each candidate sentence, and of the best answer.

Everything here is small arithmetic over vectors computed at ingestion (each sentence's in-context vector) and the
question's own embedding, plus term overlap: no model runs over sentences at question time. The same functions
build the training data (benchmarks/train_answerer.py) and score live questions, so the two cannot drift.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rag.text import terms, words

# The kind of answer a question asks for, by its wording; "other" when none matches.
QUESTION_KINDS = ("why", "when", "number", "who", "where", "how", "yesno", "other")
_KIND_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("why", re.compile(r"\b(why|what (caused|causes|led to|leads to|prompted|motivated)|how come|for what reason)\b")),
    (
        "when",
        re.compile(r"\b(when|what (year|years|date|day|month|time|century|decade|period|era)|which (year|century))\b"),
    ),
    (
        "number",
        re.compile(
            r"\b(how (many|much|long|far|old|big|large|tall|often|high|deep|wide|heavy|fast)|what (percentage|percent|"
            r"number|amount|fraction|proportion|size|population|temperature|speed|distance))\b"
        ),
    ),
    ("who", re.compile(r"\b(who|whom|whose|which (person|people|man|woman|group|company|team|player))\b")),
    ("where", re.compile(r"\b(where|what (country|city|state|place|region|location|continent|area))\b")),
    ("how", re.compile(r"^\s*how\b")),
    ("yesno", re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b")),
]
# What a sentence holding that kind of answer tends to contain.
_CUES: dict[str, re.Pattern[str]] = {
    "why": re.compile(
        r"\b(because|due to|owing to|reaction to|response to|in order to|as a result|result of|caused by|led to|"
        r"lead to|reason|so that|since|thanks to|driven by|aimed at|motivated|therefore|thus|hence)\b",
        re.I,
    ),
    "when": re.compile(
        r"\b(1[0-9]{3}|20[0-9]{2}|[0-9]{1,2}(st|nd|rd|th) century|january|february|march|april|may|june|july|"
        r"august|september|october|november|december|century|decade|monday|tuesday|wednesday|thursday|friday|"
        r"saturday|sunday|yesterday|today|ago|later|earlier|until|since|during|before|after)\b",
        re.I,
    ),
    "number": re.compile(
        r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
        r"thousand|million|billion|dozen|half|percent)\b",
        re.I,
    ),
    "who": re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z.]+)+|\b(he|she|they|king|president|leader|minister)\b"),
    "where": re.compile(r"\b(in|at|near|from|to) (the )?[A-Z]|\b(north|south|east|west|city|country|region)\b"),
    "how": re.compile(r"\b(by|through|using|via|with)\b", re.I),
}
_PRONOUN_START = re.compile(r"^\s*(he|she|it|they|his|her|its|their|this|these|those|that|such)\b", re.I)
_CAPITALISED = re.compile(r"(?<!^)(?<![.!?] )\b[A-Z][a-zA-Z]+")
_NUMBER = re.compile(r"\d")
_NUMBERS = re.compile(r"\d+(?:[.,]\d+)*")
# SQuAD 2.0's unanswerable questions often negate what the passage says, or ask about a number it does not hold.
_NEGATION = re.compile(r"\b(not|never|no|none|nor|cannot|without|n't)\b|n't\b", re.I)

SENTENCE_FEATURES = (
    "cosine",
    "cosine_gap",
    "cosine_rank",
    "lexical",
    "lexical_gap",
    "lexical_rank",
    "lexical_window",
    "lexical_passage",
    "bigrams",
    "novelty",
    "cue",
    "cue_why",
    "cue_when",
    "cue_number",
    "cue_who",
    "cue_where",
    "number",
    "new_names",
    "pronoun_start",
    "log_words",
    "short",
    "passage_rank",
    "passage_score",
    "passage_dense",
    "first_in_passage",
    "window_missing_idf",
    "negation_mismatch",
    "number_mismatch",
)


@dataclass(frozen=True)
class Question:
    """A question's terms, their idf weights and the kind of answer it asks for."""

    text: str
    terms: frozenset[str]
    weights: dict[str, float]
    bigrams: frozenset[tuple[str, str]]
    kind: str
    numbers: frozenset[str]
    negated: bool

    @property
    def weight(self) -> float:
        return sum(self.weights.values()) or 1.0


def analyse_question(text: str, idf: Callable[[str], float]) -> Question:
    """Terms, idf weights, term bigrams and the answer kind of ``text``."""
    seq = terms(text)
    found = frozenset(seq)
    return Question(
        text=text,
        terms=found,
        weights={t: max(idf(t), 0.0) for t in found},
        bigrams=frozenset(zip(seq, seq[1:], strict=False)),
        kind=question_kind(text),
        numbers=frozenset(_NUMBERS.findall(text)),
        negated=bool(_NEGATION.search(text)),
    )


def question_kind(text: str) -> str:
    """One of QUESTION_KINDS."""
    lowered = text.lower()
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(lowered):
            return kind
    return "other"


@dataclass(frozen=True)
class Candidate:
    """One sentence of a retrieved passage: its text, its neighbours' text, and where its passage ranked."""

    text: str
    before: str
    after: str
    passage_text: str
    passage_rank: int
    passage_score: float
    passage_dense: float
    first_in_passage: bool


def sentence_features(question: Question, candidates: Sequence[Candidate], cosines: np.ndarray) -> np.ndarray:
    """One row of SENTENCE_FEATURES per candidate (cosines: question vs each sentence's vector)."""
    n = len(candidates)
    out = np.zeros((n, len(SENTENCE_FEATURES)), dtype=np.float32)
    if n == 0:
        return out
    cos = np.asarray(cosines, dtype=np.float32)
    lexical = np.zeros(n, dtype=np.float32)
    passage_cover: dict[str, float] = {}
    for i, c in enumerate(candidates):
        s_terms = terms(c.text)
        s_set = _term_set(c.text)
        lexical[i] = _cover(question, s_set)
        window = s_set | _term_set(c.before) | _term_set(c.after)
        if c.passage_text not in passage_cover:
            passage_cover[c.passage_text] = _cover(question, _term_set(c.passage_text))
        bigrams = set(zip(s_terms, s_terms[1:], strict=False))
        n_words = len(words(c.text))
        cue = _CUES.get(question.kind)
        has_cue = 1.0 if cue is not None and cue.search(c.text) else 0.0
        row = out[i]
        row[3] = lexical[i]
        row[6] = _cover(question, window)
        row[7] = passage_cover[c.passage_text]
        row[8] = len(question.bigrams & bigrams) / len(question.bigrams) if question.bigrams else 0.0
        row[9] = len(s_set - question.terms) / len(s_set) if s_set else 0.0
        row[10] = has_cue
        for j, kind in enumerate(("why", "when", "number", "who", "where")):
            row[11 + j] = has_cue if question.kind == kind else 0.0
        row[16] = 1.0 if _NUMBER.search(c.text) else 0.0
        names = {w.lower() for w in _CAPITALISED.findall(c.text)}
        row[17] = min(len({m for m in names if not (set(terms(m)) <= question.terms)}), 5) / 5.0
        row[18] = 1.0 if _PRONOUN_START.search(c.text) else 0.0
        row[19] = math.log1p(n_words) / 4.0
        row[20] = 1.0 if n_words < 5 else 0.0
        row[21] = 1.0 / (c.passage_rank + 1)
        row[22] = c.passage_score
        row[23] = c.passage_dense
        row[24] = 1.0 if c.first_in_passage else 0.0
        row[25] = max((question.weights[t] for t in question.terms - window), default=0.0) / 10.0
        window_text = f"{c.before} {c.text} {c.after}"
        row[26] = 1.0 if question.negated and not _NEGATION.search(window_text) else 0.0
        row[27] = 1.0 if question.numbers - set(_NUMBERS.findall(window_text)) else 0.0
    out[:, 0] = cos
    out[:, 1] = cos - cos.max()
    out[:, 2] = 1.0 / (1.0 + _ranks(cos))
    out[:, 4] = lexical - lexical.max()
    out[:, 5] = 1.0 / (1.0 + _ranks(lexical))
    return out


ANSWER_FEATURES = (
    "best_logit",
    "best_probability",
    "margin",
    "best_cosine",
    "best_lexical",
    "best_lexical_window",
    "best_cue",
    "passage_cover",
    "missing_weight",
    "missing_max_idf",
    "top_dense",
    "top_bm25",
    "top_score",
    "dense_bm25_agree",
    "question_terms",
    "best_window_missing_idf",
    "best_negation_mismatch",
    "best_number_mismatch",
    "second_probability",
    *(f"kind_{k}" for k in QUESTION_KINDS),
    # Relative to the question's own candidates, so that they read alike whatever sets the raw scale (chunk length,
    # collection size, the question's length): how far the best passage stands above the retrieved ones' median,
    # densely and lexically, and the best sentence above the candidates' median cosine and term coverage.
    "dense_margin",
    "bm25_margin",
    "cosine_margin",
    "lexical_margin",
)


def answer_features(
    question: Question,
    features: np.ndarray,
    logits: np.ndarray,
    *,
    passages_text: Sequence[str],
    dense: Sequence[float],
    bm25: Sequence[float],
    top_score: float,
    agree: float,
) -> np.ndarray:
    """One row of ANSWER_FEATURES for the best candidate of a question (features/logits: all candidates; dense,
    bm25: the retrieved passages' scores)."""
    row = np.zeros(len(ANSWER_FEATURES), dtype=np.float32)
    order = np.argsort(-logits, kind="stable")
    best = int(order[0])
    probs = _softmax(logits)
    row[0] = float(logits[best])
    row[1] = float(probs[best])
    row[2] = float(logits[best] - logits[order[1]]) if len(order) > 1 else 5.0
    row[3] = features[best, SENTENCE_FEATURES.index("cosine")]
    row[4] = features[best, SENTENCE_FEATURES.index("lexical")]
    row[5] = features[best, SENTENCE_FEATURES.index("lexical_window")]
    row[6] = features[best, SENTENCE_FEATURES.index("cue")]
    found: set[str] = set()
    for text in passages_text:
        found |= _term_set(text)
    missing = [question.weights[t] for t in question.terms - found]
    row[7] = features[best, SENTENCE_FEATURES.index("lexical_passage")]
    row[8] = sum(missing) / question.weight
    row[9] = max(missing, default=0.0) / 10.0
    top_dense = max(dense, default=0.0)
    top_bm25 = max(bm25, default=0.0)
    row[10] = top_dense
    row[11] = math.log1p(max(top_bm25, 0.0)) / 3.0
    row[12] = top_score
    row[13] = agree
    row[14] = min(len(question.terms), 12) / 12.0
    row[15] = features[best, SENTENCE_FEATURES.index("window_missing_idf")]
    row[16] = features[best, SENTENCE_FEATURES.index("negation_mismatch")]
    row[17] = features[best, SENTENCE_FEATURES.index("number_mismatch")]
    row[18] = float(probs[order[1]]) if len(order) > 1 else 0.0
    row[19 + QUESTION_KINDS.index(question.kind)] = 1.0
    k = 19 + len(QUESTION_KINDS)
    row[k] = top_dense - float(np.median(dense)) if len(dense) else 0.0
    row[k + 1] = (top_bm25 - float(np.median(bm25))) / top_bm25 if len(bm25) and top_bm25 > 0 else 0.0
    for j, name in enumerate(("cosine", "lexical")):
        column = features[:, SENTENCE_FEATURES.index(name)]
        row[k + 2 + j] = float(column[best] - np.median(column))
    return row


@lru_cache(maxsize=8192)
def _term_set(text: str) -> frozenset[str]:
    """A text's terms, memoised: each sentence is also its neighbours' context, and passages recur across questions."""
    return frozenset(terms(text))


def _cover(question: Question, found: AbstractSet[str]) -> float:
    return sum(question.weights[t] for t in question.terms & found) / question.weight


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[order] = np.arange(len(values), dtype=np.float32)
    return ranks


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()
