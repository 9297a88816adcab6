"""The question-answering service: validation, retrieval, answering and timings, behind one call."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from rag.answering.extractive import Extract, ExtractiveAnswerer
from rag.answering.generated import Generated, GeneratedAnswerer
from rag.config import MAX_QUESTION_CHARS, MAX_TOP_K
from rag.embedding import DIMENSIONS, SentenceTransformerEmbedder
from rag.errors import DocumentNotFound, IndexEmpty, InvalidQuestion
from rag.retrieval.followup import CONTEXT_WEIGHT, PriorTurn, resolve_followup
from rag.retrieval.hybrid import HybridRetriever
from rag.store import ChromaStore
from rag.text import text_deltas
from rag.types import Answer, Citation, DocumentInfo, Passage, page_of

# 20k sentences x 384 float32 = 30 MB.
SENTENCE_CACHE_ITEMS = 20_000

log = logging.getLogger(__name__)


def validate_question(question: str) -> str:
    """Return the stripped question or raise InvalidQuestion saying what to fix."""
    stripped = question.strip()
    if not stripped:
        raise InvalidQuestion("question is empty: send a question with at least one non-space character")
    if len(stripped) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(
            f"question is {len(stripped)} characters long: shorten it to at most {MAX_QUESTION_CHARS}"
        )
    return stripped


class RAGService:
    """Answers questions over one collection with cited sentences."""

    def __init__(
        self,
        *,
        store: ChromaStore,
        embedder: SentenceTransformerEmbedder,
        retriever: HybridRetriever,
        answerer: ExtractiveAnswerer,
        sentence_vectors: EmbeddingCache,
        default_top_k: int,
        generator: GeneratedAnswerer | None = None,
    ) -> None:
        """Wire built parts together; ``rag.factory.build_service`` builds them from Settings."""
        self.store = store
        self.embedder = embedder
        self.retriever = retriever
        # Sentence vectors computed at question time (passages indexed without stored ones, the support judge).
        self.sentence_vectors = sentence_vectors
        self.default_top_k = default_top_k
        self.answerer = answerer
        # None: extractive answers only. Otherwise the model writes the answer and the extractive one is the fallback.
        self.generator = generator
        # Called with every answer produced (metrics at the edge); an observer's failure never fails an answer.
        self.observers: list[Callable[[Answer], None]] = []
        # The start-up repair (api.app): None before it starts, then "running", "done" or "failed" (/ready says).
        self.start_repair: str | None = None

    def ask(self, question: str, *, top_k: int | None = None, context: Sequence[PriorTurn] = ()) -> Answer:
        """Answer ``question`` from the index, citing the sentences used; ``context`` is the chat so far."""
        prepared = self._prepare(question, top_k, context)
        if self.generator is None or prepared.extract.no_answer:
            return self._observed(prepared.answer(_extractive(prepared.extract)))
        t0 = time.perf_counter()
        generated = self.generator.answer(
            prepared.query or prepared.question, prepared.passages, fallback=prepared.extract
        )
        prepared.timings["generate"] = _ms(time.perf_counter() - t0)
        return self._observed(prepared.answer(generated))

    def ask_stream(
        self,
        question: str,
        *,
        top_k: int | None = None,
        context: Sequence[PriorTurn] = (),
        checkpoint: Callable[[], None] | None = None,
    ) -> Iterator[str | Answer]:
        """Answer ``question`` as a stream: text deltas, then the final Answer (always last, exactly once).

        Validation and retrieval happen before this returns, so bad input and an empty index raise here, not
        mid-stream. A generated answer streams each sentence once it is judged, so the deltas concatenate to the
        final ``Answer.answer``; if the model fails before its first sentence, the extractive answer streams instead.
        ``checkpoint`` is called between the model's tokens: what it raises stops the answer and closes the model's
        stream (the API stops an answer whose client has gone).
        """
        prepared = self._prepare(question, top_k, context)
        if self.generator is None or prepared.extract.no_answer:
            return _replay(self._observed(prepared.answer(_extractive(prepared.extract))))
        return self._stream_generated(prepared, self.generator, checkpoint)

    def _stream_generated(
        self, prepared: _Prepared, generator: GeneratedAnswerer, checkpoint: Callable[[], None] | None
    ) -> Iterator[str | Answer]:
        t0 = time.perf_counter()
        for event in generator.stream(
            prepared.query or prepared.question, prepared.passages, fallback=prepared.extract, checkpoint=checkpoint
        ):
            if isinstance(event, Generated):
                prepared.timings["generate"] = _ms(time.perf_counter() - t0)
                yield self._observed(prepared.answer(event))
            else:
                yield event

    def _prepare(self, question: str, top_k: int | None, context: Sequence[PriorTurn]) -> _Prepared:
        question = validate_question(question)
        top_k = top_k or self.default_top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidQuestion(f"top_k must be between 1 and {MAX_TOP_K}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        lexical = self.retriever.lexical()
        if lexical.size == 0:
            raise IndexEmpty("the index is empty: index some documents first (rag index PATH or POST /documents)")
        resolved = resolve_followup(question, context)
        q_emb = self.embedder.embed_query(resolved.text)
        retrieval_emb = q_emb
        if resolved.context:
            # The earlier turns steer retrieval a little; the message itself dominates the query vector.
            mixed = (1 - CONTEXT_WEIGHT) * q_emb + CONTEXT_WEIGHT * self.embedder.embed_query(resolved.context)
            retrieval_emb = (mixed / (np.linalg.norm(mixed) or 1.0)).astype(np.float32)
        t1 = time.perf_counter()
        passages = self.retriever.retrieve(resolved.text, top_k=top_k, query_embedding=retrieval_emb, lexical=lexical)
        t2 = time.perf_counter()
        # The extractive answer is computed even when a model will write the answer: its evidence score gates a
        # refusal (calibrated, and no model call for off-topic questions) and it is the fallback.
        extract = self.answerer.answer(resolved.text, passages, q_emb, idf=lexical.idf_of)
        t3 = time.perf_counter()
        timings.update(embed=_ms(t1 - t0), retrieve=_ms(t2 - t1), answer=_ms(t3 - t2))
        return _Prepared(
            question=question,
            query=resolved.text if resolved.followup else None,
            passages=passages,
            extract=extract,
            timings=timings,
            t0=t0,
            pages=lexical.doc_pages,
        )

    def _observed(self, answer: Answer) -> Answer:
        self.observe(answer)
        return answer

    def observe(self, answer: Answer) -> None:
        """Tell the observers about an answer (routes that build answers another way call this too)."""
        for observer in self.observers:
            try:
                observer(answer)
            except Exception:
                log.exception("answer observer failed")

    def list_documents(self) -> list[DocumentInfo]:
        return self.store.list_documents()

    def get_document(self, doc_id: str) -> DocumentInfo:
        info = self.store.get_document(doc_id)
        if info is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}: GET /documents lists the indexed ones")
        return info

    def delete_document(self, doc_id: str) -> None:
        """Remove a document and its chunks; DocumentNotFound if there is none."""
        if not self.store.delete_document(doc_id):
            raise DocumentNotFound(f"no document with id {doc_id!r}: GET /documents lists the indexed ones")


class EmbeddingCache:
    """Memoises ``embed`` by text (LRU): the same passages come back for related questions, and embedding their
    sentences is most of an answer's cost. Vectors are exactly what ``embed`` returns for the text."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], *, max_items: int = SENTENCE_CACHE_ITEMS) -> None:
        self._embed = embed
        self._max = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            found = {t: self._items[t] for t in texts if t in self._items}
            for t in found:
                self._items.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            for t, v in zip(missing, self._embed(missing), strict=True):
                found[t] = v
            with self._lock:
                for t in missing:
                    self._items[t] = found[t]
                while len(self._items) > self._max:
                    self._items.popitem(last=False)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.stack([found[t] for t in texts])


@dataclass
class _Prepared:
    """A validated question with its passages and the extractive answer (the gate and the fallback)."""

    question: str
    query: str | None
    passages: list[Passage]
    extract: Extract
    timings: dict[str, float]
    t0: float
    # Where each page begins, for the documents with pages (the store's records, as the BM25 index holds them).
    pages: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def answer(self, result: Generated) -> Answer:
        self.timings["total"] = _ms(time.perf_counter() - self.t0)
        return Answer(
            question=self.question,
            query=self.query,
            answer=result.answer,
            no_answer=result.no_answer,
            citations=[_paged(c, self.pages) for c in result.citations],
            passages=[_paged(p, self.pages) for p in self.passages],
            mode=result.mode,
            warnings=result.warnings,
            sentences=result.sentences,
            supported_share=result.supported_share,
            # The fitted estimate speaks for the extractive answer only; a model's own text is judged sentence by
            # sentence instead (sentences, supported_share).
            confidence=self.extract.confidence if result.mode == "extractive" else None,
            usage=result.usage,
            timings_ms=self.timings,
        )


_Located = TypeVar("_Located", Citation, Passage)


def _paged(item: _Located, pages: dict[str, tuple[int, ...]]) -> _Located:
    """The citation or passage with the page its start falls on, when its document has pages."""
    page = page_of(pages.get(item.doc_id, ()), item.start)
    return item if page is None else item.model_copy(update={"page": page})


def _extractive(extract: Extract) -> Generated:
    return Generated(
        answer=extract.answer,
        no_answer=extract.no_answer,
        citations=extract.citations,
        mode="extractive",
        warnings=list(extract.warnings),
    )


def _replay(answer: Answer) -> Iterator[str | Answer]:
    yield from text_deltas(answer.answer)
    yield answer


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
