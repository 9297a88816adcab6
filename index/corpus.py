"""Index a BEIR corpus (corpus.jsonl) for evaluation: one document per record, only new or changed ones embedded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from index.pipeline import Indexer, IndexReport, _progress
from rag.evaluation.references import CorpusDocument, iter_corpus
from rag.types import Document


def index_corpus(
    indexer: Indexer, folder: Path, *, show_progress: bool = False, only: Iterable[str] | None = None
) -> IndexReport:
    """Index ``folder``/corpus.jsonl: doc_id is the record's _id, the text its title, a blank line, its text.

    ``only`` restricts the corpus to those doc ids (a subset for quick runs). Documents already stored with the
    same content are left alone, so a cached store (--data-dir) is reused across runs.
    """
    import time

    started = time.perf_counter()
    wanted = set(only) if only is not None else None
    known = indexer.store.document_hashes()
    report = IndexReport()
    changed = []
    for record in iter_corpus(folder):
        if wanted is not None and record.doc_id not in wanted:
            continue
        document = _document(indexer, record, folder)
        previous = known.get(document.doc_id)
        if previous is not None and previous[0] == document.content_hash:
            report.unchanged += 1
            continue
        changed.append(document)
        if previous is None:
            report.added += 1
        else:
            report.updated += 1
    bar = _progress(len(changed), show_progress)
    try:
        report.chunks = indexer.put_many(changed, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    report.seconds = time.perf_counter() - started
    return report


def _document(indexer: Indexer, record: CorpusDocument, folder: Path) -> Document:
    return indexer.make_document(
        doc_id=record.doc_id,
        source=f"{Path(folder).name}/{record.doc_id}",
        text=record.full_text(),
        title=record.title,
        root=f"beir:{Path(folder).resolve()}",
    )
