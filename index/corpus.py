"""Index a BEIR corpus (corpus.jsonl) for evaluation: one document per record, only new or changed ones embedded."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from index.pipeline import Indexer, IndexReport
from rag.evaluation.references import CorpusDocument, iter_corpus
from rag.types import Document


def index_corpus(
    indexer: Indexer, folder: Path, *, show_progress: bool = False, only: Iterable[str] | None = None
) -> IndexReport:
    """Index ``folder``/corpus.jsonl: doc_id is the record's _id, the text its title, a blank line, its text.

    ``only`` restricts the corpus to those doc ids (a subset for quick runs). Documents already stored with the
    same content are left alone, so a cached store (--data-dir) is reused across runs; chunks of a store written
    before sentence vectors were stored get them (``Indexer.backfill_sentence_vectors``).
    """
    started = time.perf_counter()
    wanted = set(only) if only is not None else None
    report = IndexReport()

    def documents() -> Iterator[Document]:
        for record in iter_corpus(folder):
            if wanted is None or record.doc_id in wanted:
                yield _document(record, folder)

    indexer.put_changed(documents(), report=report, show_progress=show_progress)
    indexer.backfill_sentence_vectors(report=report, show_progress=show_progress)
    report.seconds = time.perf_counter() - started
    return report


def _document(record: CorpusDocument, folder: Path) -> Document:
    return Document.from_text(
        doc_id=record.doc_id,
        source=f"{Path(folder).name}/{record.doc_id}",
        text=record.full_text(),
        title=record.title,
        root=f"beir:{Path(folder).resolve()}",
    )
