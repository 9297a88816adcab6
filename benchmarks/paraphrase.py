"""Rule-made rephrasings of training questions: the same question in fewer of its passage's words.

SQuAD's questions repeat the words of their answer sentence; people who have not read the passage do not ("What
was Gabriel's real name?" against "... Martin Quispe Palomino, alias “Gabriel,” ..."). A model fitted on SQuAD
alone learns that low word overlap means "no answer". These rephrasings teach it otherwise: in a question, common
words (lower case, not stop words, not numbers) that its paragraph also holds are swapped for a near neighbour in
MiniLM's space whose stem the paragraph does not hold, or, with no such neighbour, dropped. Names and numbers are
kept, so an answerable question stays answerable (mostly: a neighbour may be an antonym; that noise is accepted).
The same rule is applied to every kind of question (answerable, adversarial, off-topic), so word overlap is made
less telling for all of them alike, not a label in disguise.

The vocabulary is the tuning half's paragraphs and questions only (words seen at least 3 times).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from rag.text import STOPWORDS, terms

_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*|\S")
_KEEP = frozenset(
    """what which who whom whose when where why how hundred hundreds thousand thousands million millions billion
    billions first second third last percent""".split()
)
SWAP_PROBABILITY = 0.6
DROP_PROBABILITY = 0.5
MIN_COSINE = 0.55
CANDIDATES = 32  # neighbours looked at per word


def stem(word: str) -> str:
    found = terms(word)
    return found[0] if found else word.lower()


class Paraphraser:
    """Neighbour swaps over a fixed vocabulary embedded once."""

    def __init__(self, vocabulary: list[str], vectors: np.ndarray, seed: int = 0) -> None:
        self.vocabulary = vocabulary
        self.index = {w: i for i, w in enumerate(vocabulary)}
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        self.rng = random.Random(seed)
        self._memo: dict[str, tuple[tuple[str, str], ...]] = {}

    @staticmethod
    def vocabulary_of(texts: Iterable[str], min_count: int = 3) -> list[str]:
        counts: Counter[str] = Counter()
        for text in texts:  # as written: a word seen only capitalised (a name) is not a candidate
            counts.update(w for w in re.findall(r"\b[a-z]{3,}\b", text) if w not in STOPWORDS and w not in _KEEP)
        return sorted(w for w, n in counts.items() if n >= min_count)

    def nearest(self, word: str, avoid: frozenset[str]) -> str | None:
        """The nearest word (cosine >= MIN_COSINE) whose stem is neither ``word``'s nor in ``avoid``."""
        return next((other for other, s in self._candidates(word) if s not in avoid), None)

    def _candidates(self, word: str) -> tuple[tuple[str, str], ...]:
        """``word``'s neighbours by cosine (at most CANDIDATES, cosine >= MIN_COSINE) with their stems, less those
        sharing its stem or its first four letters: computed once per word, filtered per passage by ``nearest``."""
        if word in self._memo:
            return self._memo[word]
        i = self.index.get(word)
        if i is None:
            return ()
        cos = self.vectors @ self.vectors[i]
        own = stem(word)
        out = []
        for j in np.argsort(-cos)[:CANDIDATES]:
            if cos[j] < MIN_COSINE:
                break
            other = self.vocabulary[j]
            s = stem(other)
            if s != own and not other.startswith(word[:4]) and not word.startswith(other[:4]):
                out.append((other, s))
        found = self._memo[word] = tuple(out)
        return found

    def rephrase(self, question: str, passage: str) -> str | None:
        """``question`` with its passage's common words swapped or dropped; None when nothing changed."""
        avoid = frozenset(terms(passage))
        tokens = _TOKEN.findall(question)
        out, changed = [], False
        for token in tokens:
            plain = token.lower()
            eligible = (
                token.isalpha()
                and token == plain
                and len(token) >= 3
                and plain not in STOPWORDS
                and plain not in _KEEP
                and stem(plain) in avoid
            )
            if not eligible or self.rng.random() >= SWAP_PROBABILITY:
                out.append(token)
                continue
            swap = self.nearest(plain, avoid)
            if swap is not None:
                out.append(swap)
                changed = True
            elif self.rng.random() < DROP_PROBABILITY:
                changed = True
            else:
                out.append(token)
        if not changed:
            return None
        text = " ".join(out)
        return re.sub(r" ([?.,;:!'])", r"\1", text).replace(" 's", "'s")
