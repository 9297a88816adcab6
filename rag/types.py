"""Our own types. Every interface (/ask, /chat, the OpenAI endpoint, the CLI, the evaluator) speaks these."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from rag.text import content_hash, normalize_text


@dataclass(frozen=True)
class Document:
    """A loaded document: ``text`` is the normalised text every offset refers to."""

    doc_id: str
    source: str
    text: str
    content_hash: str
    root: str = ""
    title: str = ""
    # Paged sources (PDF): the offset in ``text`` where each page begins, page 1 first; empty for other types.
    page_starts: tuple[int, ...] = ()

    @classmethod
    def from_text(cls, *, doc_id: str, source: str, text: str, title: str = "", root: str = "") -> Document:
        """Normalise raw text (once: every offset refers to the result) and hash it; the one way to make one."""
        normalised = normalize_text(text)
        return cls(
            doc_id=doc_id, source=source, text=normalised, content_hash=content_hash(normalised), root=root, title=title
        )

    @classmethod
    def from_pages(cls, *, doc_id: str, source: str, pages: Sequence[str], title: str = "", root: str = "") -> Document:
        """Normalise each page and join them with a paragraph break, keeping where each page begins.

        The break ends a sentence and keeps a page's last word (hyphenated or not) apart from the next page's
        first, and the joined text is already normalised, so offsets and page starts refer to the stored text.
        An empty page begins where the next page with text does, so it holds no offset of its own.
        """
        parts: list[str] = []
        starts: list[int] = []
        position = empty = 0
        for page in pages:
            text = normalize_text(page)
            if not text:
                empty += 1
                continue
            if parts:
                position += len(PAGE_BREAK)
            starts.extend([position] * (empty + 1))
            empty = 0
            parts.append(text)
            position += len(text)
        starts.extend([position] * empty)
        joined = PAGE_BREAK.join(parts)
        return cls(
            doc_id=doc_id,
            source=source,
            text=joined,
            content_hash=content_hash(joined),
            root=root,
            title=title,
            page_starts=tuple(starts),
        )


# Between two pages of a paged document's text: a paragraph break, which normalisation keeps as it is.
PAGE_BREAK = "\n\n"


def page_of(page_starts: Sequence[int], offset: int) -> int | None:
    """The 1-based page holding ``offset``, given where each page begins; None for a document without pages."""
    if not page_starts:
        return None
    return max(bisect_right(page_starts, offset), 1)


def page_ranges(text: str, page_starts: Sequence[int]) -> list[tuple[int, int, int]]:
    """(page, start, end) of each page in ``text``: ``text[start:end]`` is the page, without the break after it."""
    if not page_starts:
        return []
    bounds = [*page_starts[1:], len(text)]
    return [
        (number, start, max(start, len(text[:bound].rstrip())))
        for number, (start, bound) in enumerate(zip(page_starts, bounds, strict=True), start=1)
    ]


@dataclass(frozen=True)
class Chunk:
    """A span of a document: ``document.text[start:end] == text``."""

    chunk_id: str
    doc_id: str
    source: str
    text: str
    start: int
    end: int
    index: int
    content_hash: str = ""
    # In-context vectors of the chunk's sentences (rag.text.sentence_spans order), float16; empty if not computed.
    sentence_vectors: Any = None


@dataclass
class DocumentInfo:
    """What the store knows about a document, without its text unless asked."""

    doc_id: str
    source: str
    content_hash: str
    chunks: int
    root: str = ""
    title: str = ""
    text: str | None = None
    page_starts: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


class Passage(BaseModel):
    """A retrieved chunk with its fused score."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chunk_id: str
    doc_id: str
    source: str
    start: int = Field(description="Offset of the chunk in the document's normalised text.")
    end: int = Field(description="End offset (exclusive): text[start:end] is the chunk.")
    text: str
    score: float = Field(description="Fused retrieval score (higher is better).")
    dense_score: float | None = Field(None, description="Cosine similarity to the question, if retrieved densely.")
    bm25_score: float | None = Field(None, description="BM25 score, if retrieved lexically.")
    page: int | None = Field(
        None,
        description="PDFs: the 1-based page the chunk starts on; null for other types (and PDFs indexed "
        "before pages were kept).",
    )
    # The chunk's in-context sentence vectors (rag.text.sentence_spans order) as the store kept them, for the
    # answerer's "stored" mode; None when it has none. Never serialised, not part of the API's schema.
    sentence_vectors: SkipJsonSchema[np.ndarray | None] = Field(None, exclude=True, repr=False)


class Citation(BaseModel):
    """One cited sentence: document_text[start:end] == quote."""

    n: int = Field(description="The marker number [n] used in the answer text.")
    doc_id: str
    source: str = Field(description="Path of the source file (or the name given at upload).")
    quote: str = Field(description="The exact cited sentence.")
    start: int = Field(description="Character offset of the quote in the document's normalised text.")
    end: int = Field(description="End offset (exclusive).")
    score: float = Field(description="How strongly the sentence answers the question (0..1, higher is better).")
    supported: bool | None = Field(None, description="Support verdict when citations are checked, else null.")
    page: int | None = Field(
        None,
        description="PDFs: the 1-based page of the quote (the first, if it spans two); null for other types "
        "(and PDFs indexed before pages were kept).",
    )


class SentenceVerdict(BaseModel):
    """One sentence of a generated answer with the support judge's verdict on the passages it cites."""

    text: str = Field(description="The sentence as it reads in the answer, without its markers.")
    citations: list[int] = Field(default_factory=list, description="The markers [n] it carries.")
    supported: bool = Field(description="True when at least one cited quote supports it.")
    score: float = Field(description="The judge's best support probability among its citations (0 if uncited).")
    attributed: bool = Field(
        False, description="The model wrote no marker; the checker cited the passage the judge found supporting it."
    )


class TokenUsage(BaseModel):
    """Tokens a language model server counted for one answer, as OpenAI's ``usage`` reports them."""

    prompt_tokens: int = Field(description="Tokens of the prompt.")
    completion_tokens: int = Field(description="Tokens of the reply.")
    total_tokens: int = Field(description="Their sum.")


class Answer(BaseModel):
    """The one answer type every interface returns."""

    question: str
    query: str | None = Field(
        None, description="The standalone query retrieved with, when a chat follow-up was rewritten; else null."
    )
    answer: str = Field(description="Answer text; each sentence ends with its citation marker(s) [n].")
    no_answer: bool = Field(description="True when the evidence was too weak to answer; then citations is empty.")
    citations: list[Citation] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list, description="The retrieved chunks, best first.")
    mode: str = Field("extractive", description="'extractive' or 'generated'.")
    warnings: list[str] = Field(
        default_factory=list, description="What went differently, e.g. a fallback from the language model."
    )
    sentences: list[SentenceVerdict] = Field(
        default_factory=list, description="Generated answers: each sentence with its support verdict; else empty."
    )
    supported_share: float | None = Field(
        None, description="Generated answers: share of the model's sentences the judge found supported; else null."
    )
    confidence: float | None = Field(
        None,
        description="Estimated probability (0..1) that the answer is right, fitted on data and calibrated; an answer "
        "below the operating point RAG_MIN_CONFIDENCE is a refusal. Null where no estimate was made.",
    )
    usage: TokenUsage | None = Field(
        None,
        description="Generated answers: the model server's token counts, as it reported them; null otherwise (and "
        "when the server reported none).",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Milliseconds per stage.")
