"""Text utilities shared by ingestion and answering: normalisation, sentence spans, terms."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import Stemmer

_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_TRAILING = re.compile(r" +\n")
_BLANKS = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def normalize_text(text: str) -> str:
    """Normalise once at ingestion: NFKC, \\n line ends, single spaces, at most one blank line, stripped."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _TRAILING.sub("\n", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip()


# In an answer's text, square brackets belong to our citation markers ("[1]") alone.
_BRACKETS = str.maketrans("[]", "()")


def escape_brackets(text: str) -> str:
    """Source text as it may appear in an answer: its square brackets as parentheses ("[2]" -> "(2)").

    A document's own reference marks ("[2]", "[12, 13]") would otherwise read as our markers to every client (the
    page, the evaluator, an OpenAI client), and its other brackets ("[SD]", "[Box 2]") are rewritten with them so the
    rule stays simple: in answer text, a square bracket is ours. Quotes are never escaped: they stay exactly
    ``document_text[start:end]``.
    """
    return text.translate(_BRACKETS)


def content_hash(text: str) -> str:
    """Stable hash of a normalised text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace, or at a line break.
_SENT_END = re.compile(r"""[.!?]+["'\u201d\u2019)\]]*(?=\s+|$)|\n+""")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e al fig figs eq no nos vol approx dept est inc ltd co corp gen gov "
    "lt col sgt capt rev jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m ca cf".split()
)


def sentence_spans(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Split ``text`` into sentences; returns (start, end) spans (plus ``offset``) with no surrounding space."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENT_END.finditer(text):
        end = match.end()
        if match.group().startswith((".",)) and not match.group().startswith("\n"):
            if _is_abbreviation(text, match.start()) or _next_is_lower(text, end):
                continue
        _add_span(text, start, end, spans, offset)
        start = end
    _add_span(text, start, len(text), spans, offset)
    return spans


def _is_abbreviation(text: str, dot: int) -> bool:
    word_start = dot
    while word_start > 0 and not text[word_start - 1].isspace() and text[word_start - 1] not in "([\"'\u201c":
        word_start -= 1
    word = text[word_start:dot].lower()
    if word in _ABBREVIATIONS:
        return True
    # Initials such as "J." or "U.S." but not numbers ending a sentence ("in 1999.").
    return len(word) == 1 and word.isalpha()


def _next_is_lower(text: str, end: int) -> bool:
    rest = text[end : end + 3].lstrip()
    return bool(rest) and rest[0].islower()


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]], offset: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start + offset, end + offset))


_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*", re.UNICODE)
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here hers
    herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves also may might must shall s t""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def terms(text: str) -> list[str]:
    """Stemmed content terms (stop words removed): the vocabulary of BM25 and lexical overlap."""
    tokens = [w for w in words(text) if w not in STOPWORDS]
    return list(_stemmer().stemWords(tokens)) if tokens else []


_DELTA = re.compile(r"\S+(?:\s+\S+){0,3}\s*")


def text_deltas(text: str) -> list[str]:
    """Split an answer into word groups (about four words each) whose concatenation is ``text`` exactly."""
    lead = text[: len(text) - len(text.lstrip())]
    parts = _DELTA.findall(text)
    if parts and lead:
        parts[0] = lead + parts[0]
    return parts or ([text] if text else [])
