"""Citation markers in a generated answer: parse them, range-check them, judge them and renumber them.

A model cites passages ("... [2]"); the answer we return cites exact sentences. Each generated sentence is judged
against the passages it cites; for each cited passage the best-supporting sentence becomes the Citation's quote
(with its exact offsets), and citations are renumbered by first appearance, one number per distinct quote.

A source's own reference marks ("74 [14] years", "shown before [12, 13]") are not markers. Two guards keep them out:
the prompt shows the passages with their brackets as parentheses (``escape_brackets``), so a model that copies from
them copies "(14)"; and the parser still treats a bracket that the model wrote right after the same words as a
passage does ("74 [14]" when a passage reads "74 [14]": a model that knows the paper can restore the original) as
copied text, shown as "(14)", not as a citation of passage 14 or 2. What is left of the brackets in a generated
sentence once its markers are parsed ("[SD]", "[Box 2]") is escaped too, so a square bracket in the answer text is
always one of our markers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.answering.judge import SupportJudge
from rag.text import escape_brackets, sentence_spans
from rag.types import Citation, Passage, SentenceVerdict

# [1], [1, 2], [1][2], [Passage 1], (1) is not a marker: models write years and counts in brackets too rarely
# to matter, but parentheses are common in prose.
MARKER = re.compile(r"\[\s*(?:passages?\s*)?(\d{1,3}(?:\s*(?:,|and|&)\s*(?:passages?\s*)?\d{1,3})*)\s*\]", re.I)
_MARKER_RUN = re.compile(rf"^(?:\s*{MARKER.pattern})+", re.I)
_LEAD = re.compile(r"^\s*(?:answer\s*:|[-*\u2022]|\d{1,2}[.)](?=\s))\s*", re.I)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
# The words before a bracket that decide whether the model copied it from a passage ("age, 74" before "[14]").
_CONTEXT = re.compile(r"(?:\S+\s*){1,3}$")
_NON_WORD_LEAD = re.compile(r"^[^\w]+")
COPY_CONTEXT_WORDS = 2


@dataclass
class GeneratedSentence:
    """A sentence the model wrote, with the passage numbers it cited (1-based, as in the prompt)."""

    text: str
    markers: list[int] = field(default_factory=list)
    out_of_range: list[int] = field(default_factory=list)


def marker_numbers(group: str) -> list[int]:
    """The numbers in one marker's inside ("1, 2" -> [1, 2])."""
    return [int(n) for n in re.findall(r"\d+", group)]


def clean_sentence(text: str) -> str:
    """A sentence without its markers, list bullets or an 'Answer:' lead, on one line."""
    text = escape_brackets(MARKER.sub(" ", text))
    text = " ".join(text.split())
    text = _LEAD.sub("", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()


def _squash(text: str) -> str:
    return " ".join(escape_brackets(text).casefold().split())


def unmark_copies(text: str, passages: Sequence[str]) -> str:
    """``text`` with each marker-like bracket copied from a passage rewritten as text ("74 [14] years" -> "74 (14)
    years").

    A bracket is a copy when it and the words before it (up to three, at least two) appear together in a passage,
    brackets and parentheses alike, case and spacing aside: a citation the model adds itself follows its own words,
    not the passage's reference mark. A sentence copied whole with its source's mark at the end therefore loses that
    "marker" and is attributed by the support judge like any unmarked sentence.
    """
    sources = [_squash(p) for p in passages]
    if not sources:
        return text
    out: list[str] = []
    last = 0
    for match in MARKER.finditer(text):
        found = _CONTEXT.search(text[max(last, match.start() - 200) : match.start()])
        # From its first word: a full stop the model put before it is no part of the passage's phrase.
        context = _NON_WORD_LEAD.sub("", found.group()) if found else ""
        if len(context.split()) >= COPY_CONTEXT_WORDS and any(_squash(context + match.group()) in s for s in sources):
            out.append(text[last : match.start()] + escape_brackets(match.group()))
        else:
            out.append(text[last : match.end()])
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def split_sentences(text: str, passage_count: int, *, passages: Sequence[str] = ()) -> list[GeneratedSentence]:
    """Split a model's answer into sentences and their in-range markers.

    Markers written after a sentence's full stop ("... attacked. [1] The ...") belong to that sentence, so a run of
    markers that opens a sentence is given to the one before it. Brackets copied from ``passages`` (the passages'
    texts) are text, not markers (``unmark_copies``).
    """
    text = unmark_copies(text, passages)
    sentences: list[GeneratedSentence] = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        lead = _MARKER_RUN.match(piece)
        if lead and sentences:
            _add_markers(sentences[-1], lead.group(), passage_count)
            piece = piece[lead.end() :]
        cleaned = clean_sentence(piece)
        if not re.search(r"\w", cleaned):
            if sentences:
                _add_markers(sentences[-1], piece, passage_count)
            continue
        sentence = GeneratedSentence(text=cleaned)
        _add_markers(sentence, piece, passage_count)
        sentences.append(sentence)
    return sentences


def _add_markers(sentence: GeneratedSentence, piece: str, passage_count: int) -> None:
    for match in MARKER.finditer(piece):
        for n in marker_numbers(match.group(1)):
            if 1 <= n <= passage_count:
                if n not in sentence.markers:
                    sentence.markers.append(n)
            elif n not in sentence.out_of_range:
                sentence.out_of_range.append(n)


@dataclass
class CheckedSentence:
    """A generated sentence after judging: the exact quotes it cites, keyed by (doc_id, start, end)."""

    text: str
    quotes: list[tuple[str, int, int]]
    supported: bool
    score: float
    attributed: bool = False


class CitationChecker:
    """Judges generated sentences and numbers their quotes by first appearance (one number per distinct quote).

    Numbers are given when a sentence is kept (``keep``), so a dropped sentence never leaves a gap, and a streamed
    sentence's markers never change afterwards.
    """

    def __init__(self, *, judge: SupportJudge) -> None:
        self.judge = judge
        self._quotes: dict[tuple[str, int, int], Citation] = {}
        self._numbers: dict[tuple[str, int, int], int] = {}

    def check(self, sentence: GeneratedSentence, passages: list[Passage]) -> CheckedSentence:
        """Judge ``sentence`` against each passage it cites and pick each passage's best-supporting sentence.

        When some cited passages support the sentence and others do not, the others' citations are removed: a
        wrong extra marker should not send the reader to a passage that does not say it.
        """
        cited = [passages[n - 1] for n in sentence.markers]
        evidence = self.judge.best_evidence(sentence.text, [p.text for p in cited]) if cited else []
        found = [(p, e) for p, e in zip(cited, evidence, strict=True) if e is not None]
        supported = any(e.supported for _, e in found)
        best = max((e.probability for _, e in found), default=0.0)
        quotes: list[tuple[str, int, int]] = []
        for passage, ev in found:
            if supported and not ev.supported:
                continue
            key = (passage.doc_id, passage.start + ev.start, passage.start + ev.end)
            if key in quotes:
                continue
            quotes.append(key)
            known = self._quotes.get(key)
            if known is None:
                self._quotes[key] = Citation(
                    n=0,
                    doc_id=passage.doc_id,
                    source=passage.source,
                    quote=passage.text[ev.start : ev.end],
                    start=key[1],
                    end=key[2],
                    score=round(ev.probability, 4),
                    supported=ev.supported,
                )
            else:
                # A quote cited by several sentences is supported only if it backs every one of them.
                known.supported = bool(known.supported) and ev.supported
                known.score = round(min(known.score, ev.probability), 4)
        return CheckedSentence(text=sentence.text, quotes=quotes, supported=supported, score=round(best, 4))

    def keep(self, sentence: CheckedSentence) -> tuple[str, SentenceVerdict]:
        """Number the sentence's quotes; return its rendered text ("text [1][2]") and its verdict."""
        marks = []
        for key in sentence.quotes:
            if key not in self._numbers:
                self._numbers[key] = len(self._numbers) + 1
            marks.append(self._numbers[key])
        verdict = SentenceVerdict(
            text=sentence.text,
            citations=marks,
            supported=sentence.supported,
            score=sentence.score,
            attributed=sentence.attributed,
        )
        return render_sentence(sentence.text, marks), verdict

    def citations(self) -> list[Citation]:
        """The kept sentences' citations, by number, with their final verdicts."""
        ordered = sorted(self._numbers.items(), key=lambda item: item[1])
        return [self._quotes[key].model_copy(update={"n": n}) for key, n in ordered]


def render_sentence(text: str, marks: list[int]) -> str:
    """A sentence followed by its markers: "text [1][2]"."""
    return text + (" " + "".join(f"[{n}]" for n in marks) if marks else "")
