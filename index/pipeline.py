"""Index folders and files: only new or changed documents are embedded; vanished ones are removed; chunks stored
without sentence vectors (by an older version) get them."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from index.chunking import chunk_document
from index.loaders import SUPPORTED, LoadError, load_document
from rag.config import Settings
from rag.embedding import SMALL_BATCH, ChunkEmbedder, Embedder
from rag.errors import DocumentBusy, DocumentTooLarge, InvalidInput
from rag.store import ChromaStore
from rag.text import sentence_spans
from rag.types import Chunk, Document, DocumentInfo

if TYPE_CHECKING:
    from multiprocessing.pool import Pool

log = logging.getLogger(__name__)

# Called with (chunks embedded so far, chunks of the document) while one document is embedded.
Progress = Callable[[int, int], None]
# Chunks embedded between two progress reports (~2-4 s of a CPU's work: moving, yet batched).
PROGRESS_CHUNKS = 128


@dataclass
class IndexReport:
    """What one index run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    backfilled: int = 0  # chunks of unchanged documents that were given their missing sentence vectors
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    seconds: float = 0.0

    @property
    def indexed(self) -> int:
        return self.added + self.updated + self.unchanged

    def summary(self) -> str:
        return (
            f"docs added={self.added} updated={self.updated} unchanged={self.unchanged} removed={self.removed} "
            f"skipped={len(self.skipped)} chunks={self.chunks} backfilled={self.backfilled} seconds={self.seconds:.1f}"
        )


@dataclass(frozen=True)
class IngestResult:
    """What storing one document did: ``added``, ``updated`` or ``unchanged`` (same content hash)."""

    status: str
    doc_id: str
    content_hash: str
    chunks: int


@dataclass(frozen=True)
class _Candidate:
    path: Path
    doc_id: str
    root: str


def build_indexer(settings: Settings, *, store: ChromaStore, embedder: Embedder) -> Indexer:
    """The Indexer the settings describe, writing to ``store`` (see rag.factory for the store and embedder)."""
    return Indexer(
        store=store,
        embedder=embedder,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        max_document_chars=settings.max_document_chars,
        max_chunks=settings.max_chunks_per_document,
    )


class Indexer:
    """Loads, chunks, embeds and stores documents into one store."""

    def __init__(
        self,
        *,
        store: ChromaStore,
        embedder: Embedder,
        chunk_tokens: int,
        chunk_overlap: int,
        max_document_chars: int | None = None,
        max_chunks: int | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        # Per-document caps (None: none): files over max_document_chars are skipped; put() and ingest() refuse a
        # document of more than max_chunks chunks before embedding any (rag index, which embeds in shared batches,
        # does not).
        self.max_document_chars = max_document_chars
        self.max_chunks = max_chunks

    def put(self, document: Document, *, progress: Progress | None = None) -> int:
        """Chunk, embed and store one document, replacing its previous chunks; returns its chunk count.

        ``progress(done, total)`` is called with the chunks embedded so far, first with 0 once the document is
        chunked; an exception it raises stops the work before anything of the document is written.
        """
        chunks = self._chunk(document)
        chunks, vectors = self._embed(chunks, progress=progress)
        self.store.replace_documents([(document, chunks, vectors)])
        return len(chunks)

    def _chunk(self, document: Document) -> list[Chunk]:
        """The document's chunks, refused (DocumentTooLarge) past ``max_chunks``."""
        chunks = chunk_document(document, chunk_tokens=self.chunk_tokens, overlap=self.chunk_overlap)
        if self.max_chunks is not None and len(chunks) > self.max_chunks:
            raise DocumentTooLarge(
                f"the document splits into {len(chunks):,} chunks, over the limit of {self.max_chunks:,} per "
                "document (RAG_MAX_CHUNKS_PER_DOCUMENT): split it into smaller documents, or raise "
                "RAG_MAX_CHUNKS_PER_DOCUMENT"
            )
        return chunks

    def ingest(self, document: Document, *, progress: Progress | None = None) -> IngestResult:
        """Store one document unless the store already holds this exact content, whole (idempotent by content hash).

        The content is chunked and embedded first, then checked and written under the document's lock
        (``ChromaStore.locked``), so a delete or another upload of the same id runs wholly before or after this one
        and the status says what this write did: "added" if the document was not there when it was written.
        "unchanged" means the record has this content hash *and* the store holds all its chunks; a record whose
        chunks went missing is re-indexed ("updated"). ``progress`` as in ``put`` (not called for unchanged content).
        """
        held = self._stored_whole(document, self.store.get_document(document.doc_id, with_text=False))
        if held is not None:  # the common re-upload: no embedding, no lock
            return IngestResult("unchanged", document.doc_id, document.content_hash, held)
        chunks = self._chunk(document)
        chunks, vectors = self._embed(chunks, progress=progress)
        with self.store.locked([document.doc_id]):
            previous = self.store.get_document(document.doc_id, with_text=False)
            held = self._stored_whole(document, previous)
            if held is not None:  # another writer stored this content meanwhile
                return IngestResult("unchanged", document.doc_id, document.content_hash, held)
            if previous is not None and previous.content_hash == document.content_hash:
                log.warning("document %s lacked some of its %d chunks: re-indexed", document.doc_id, previous.chunks)
            self.store.replace_documents([(document, chunks, vectors)])
        status = "updated" if previous is not None else "added"
        return IngestResult(status, document.doc_id, document.content_hash, len(chunks))

    def _stored_whole(self, document: Document, previous: DocumentInfo | None) -> int | None:
        """The chunk count of ``previous`` if it is this content with all its chunks in the store, else None."""
        if previous is None or previous.content_hash != document.content_hash:
            return None
        return previous.chunks if self.store.has_all_chunks(previous) else None

    def _embed(self, chunks: list[Chunk], *, progress: Progress | None = None) -> tuple[list[Chunk], np.ndarray]:
        """Chunk vectors, plus each chunk's in-context sentence vectors when the embedder offers them."""
        if progress is not None:
            return self._embed_reporting(chunks, progress)
        texts = [c.text for c in chunks]
        if not isinstance(self.embedder, ChunkEmbedder):
            return chunks, self.embedder.embed(texts)
        vectors, sentences = self.embedder.embed_chunks(texts, [sentence_spans(t) for t in texts])
        with_sentences = [
            dataclasses.replace(c, sentence_vectors=v.astype(np.float16))
            for c, v in zip(chunks, sentences, strict=True)
        ]
        return with_sentences, vectors

    def _embed_reporting(self, chunks: list[Chunk], progress: Progress) -> tuple[list[Chunk], np.ndarray]:
        """``_embed`` in slices of PROGRESS_CHUNKS, reporting after each, so a large document shows it is moving."""
        progress(0, len(chunks))
        bounds = list(range(0, len(chunks), PROGRESS_CHUNKS))
        if len(bounds) > 1 and len(chunks) - bounds[-1] <= SMALL_BATCH:
            bounds.pop()  # a short tail joins the slice before it, keeping every slice on the bulk backend
        done: list[Chunk] = []
        vectors: list[np.ndarray] = []
        for i, lo in enumerate(bounds):
            hi = bounds[i + 1] if i + 1 < len(bounds) else len(chunks)
            part, part_vectors = self._embed(chunks[lo:hi])
            done.extend(part)
            vectors.append(part_vectors)
            progress(len(done), len(chunks))
        if not vectors:
            return self._embed(chunks)
        return done, np.concatenate(vectors)

    def put_many(self, documents: Iterable[Document], *, progress: Callable[[int], None] | None = None) -> int:
        """Store many documents, embedding their chunks in shared batches; returns the chunk count.

        Three stages overlap: a thread chunks the next window of documents while this thread embeds the current
        one, and another thread writes the previous one to the store. Windows are written in order, each with
        ``replace_documents``, the store's one crash-safe write path.
        """
        chunked_q: queue.Queue[object] = queue.Queue(maxsize=2)
        written_q: queue.Queue[object] = queue.Queue(maxsize=2)
        stop = threading.Event()
        total = 0
        errors: list[BaseException] = []

        docs = documents if isinstance(documents, list) else list(documents)
        # Workers are forked here, before this call starts its threads, and only when there is enough to split.
        pool = _chunk_pool(self.chunk_tokens, self.chunk_overlap) if len(docs) >= POOL_MIN_DOCS else None

        def chunker() -> None:
            split = functools.partial(chunk_document, chunk_tokens=self.chunk_tokens, overlap=self.chunk_overlap)
            try:
                for group in _windows(docs, max_docs=WINDOW_DOCS, max_chars=WINDOW_CHARS):
                    if stop.is_set():
                        return
                    if pool is not None and len(group) > 8:
                        pieces = pool.map(split, group, chunksize=max(1, len(group) // (4 * CHUNK_WORKERS)))
                    else:
                        pieces = [split(d) for d in group]
                    chunked_q.put(list(zip(group, pieces, strict=True)))
            except BaseException as exc:  # handed to the main thread, which re-raises it
                chunked_q.put(_Failed(exc))
                return
            chunked_q.put(_DONE)

        def writer() -> None:
            while True:
                item = written_q.get()
                if item is _DONE:
                    return
                if errors:
                    continue  # drain, write nothing more after a failure
                try:
                    assert isinstance(item, list)
                    self.store.replace_documents(item)
                    if progress:
                        progress(len(item))
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=chunker, daemon=True), threading.Thread(target=writer, daemon=True)]
        for t in threads:
            t.start()
        try:
            while not errors:
                item = chunked_q.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failed):
                    raise item.exc
                assert isinstance(item, list)
                embedded, vectors = self._embed([c for _, cs in item for c in cs])
                batch = []
                at = 0
                for document, chunks in item:
                    chunks = embedded[at : at + len(chunks)]
                    batch.append((document, chunks, vectors[at : at + len(chunks)]))
                    at += len(chunks)
                    total += len(chunks)
                written_q.put(batch)
        finally:
            stop.set()
            while threads[0].is_alive():  # unblock the chunker if it waits on a full queue
                try:
                    chunked_q.get(timeout=0.05)
                except queue.Empty:
                    pass
            written_q.put(_DONE)
            threads[1].join()
            if pool is not None:
                pool.terminate()
                pool.join()
        if errors:
            raise errors[0]
        return total

    def put_changed(
        self,
        documents: Iterable[Document],
        *,
        report: IndexReport,
        known: dict[str, tuple[str, str]] | None = None,
        show_progress: bool = False,
    ) -> None:
        """Store the documents whose content the store does not hold yet, counting them in ``report``.

        A document whose content hash matches ``known`` (the store's ``document_hashes()``, read now if not given)
        is left alone, so re-indexing unchanged content embeds nothing.
        """
        if known is None:
            known = self.store.document_hashes()
        changed: list[tuple[Document, bool]] = []
        for document in documents:
            previous = known.get(document.doc_id)
            if previous is not None and previous[0] == document.content_hash:
                report.unchanged += 1
            else:
                changed.append((document, previous is not None))

        bar = _progress(len(changed), show_progress)
        done = 0

        def logged(n: int) -> None:
            nonlocal done
            done += n
            log.info("indexed %d/%d documents", done, len(changed))

        try:
            report.chunks += self.put_many((d for d, _ in changed), progress=bar.update if bar else logged)
        finally:
            if bar:
                bar.close()
        for _, existed in changed:
            if existed:
                report.updated += 1
            else:
                report.added += 1

    def backfill_sentence_vectors(self, *, report: IndexReport, show_progress: bool = False) -> None:
        """Give every chunk of the collection whose sentence vectors are missing or stale its in-context vectors.

        An index written before sentence vectors were stored still answers (the answerer embeds those sentences at
        question time, ~100 ms a question); this makes it fast. Only the vectors are written: each chunk's
        embedding, text and metadata stay exactly as stored (embed_chunks' chunk vectors are discarded).

        The whole collection, not only the documents under the folder being indexed: the vectors come from the
        stored chunk text, not from files, so documents uploaded over the API or indexed from another folder (which
        no `rag index PATH` reaches) are backfilled too, and a tenant's collection is complete after any one run.
        Finding nothing to do costs one paged read of the collection and no model time.

        Crash-safe and idempotent: each batch is one metadata update (a chunk has its vectors or not), so a killed
        run leaves the rest for the next one, and a run after a complete one backfills 0. Counted in
        ``report.backfilled``. An embedder without ``embed_chunks`` backfills nothing.
        """
        if not isinstance(self.embedder, ChunkEmbedder):
            return
        with self.store.bulk_reads():  # a full read: at 10^6 chunks a call may take seconds
            todo = self.store.chunks_without_sentence_vectors()
        if not todo:
            return
        log.info("backfilling sentence vectors of %d chunks", len(todo))
        bar = _progress(len(todo), show_progress, unit="chunk", desc="sentence vectors")
        try:
            for lo in range(0, len(todo), BACKFILL_CHUNKS):
                batch = todo[lo : lo + BACKFILL_CHUNKS]
                texts = [text for _, text in batch]
                _, sentences = self.embedder.embed_chunks(texts, [sentence_spans(t) for t in texts])
                self.store.set_sentence_vectors([i for i, _ in batch], [v.astype(np.float16) for v in sentences])
                report.backfilled += len(batch)
                if bar:
                    bar.update(len(batch))
                else:
                    log.info("backfilled %d/%d chunks", report.backfilled, len(todo))
        finally:
            if bar:
                bar.close()

    def repair(self) -> tuple[int, int]:
        """Make every document in the store whole again; returns (chunks deleted, documents re-indexed).

        Deletes the chunks no reader sees (``ChromaStore.repair``: what a crash or a failed write between the chunk
        write and the record write leaves), then re-indexes, from the text its record holds, each document whose
        record counts more chunks than the store has (left by a delete that interleaved with a write before writes
        took locks).
        """
        # One paged read of the collection serves both steps (the chunks the first deletes are never current ones,
        # so the counts of current chunks below do not change), and only its counts are kept.
        with self.store.bulk_reads():  # full reads: at 10^6 chunks a call may take seconds
            have = self.store.chunk_census()
            removed = self.store.repair(have)
        reindexed = 0
        for info in self.store.list_documents():
            if have[(info.doc_id, info.content_hash)] >= info.chunks:
                continue
            stored = self.store.get_document(info.doc_id)
            if stored is None or not stored.text:
                continue
            document = Document(
                doc_id=stored.doc_id,
                source=stored.source,
                text=stored.text,
                content_hash=stored.content_hash,
                root=stored.root,
                title=stored.title,
            )
            try:
                if self.ingest(document).status != "unchanged":
                    reindexed += 1
            except DocumentBusy:
                log.warning("document %s is being written elsewhere: left as that write leaves it", info.doc_id)
        if removed or reindexed:
            log.warning("repaired the store: deleted %d stray chunks, re-indexed %d documents", removed, reindexed)
        return removed, reindexed

    def index_paths(self, paths: Iterable[Path], *, show_progress: bool = False) -> IndexReport:
        """Index files and folders; a folder's vanished files are removed from the index.

        Then the collection's chunks that lack sentence vectors get them (``backfill_sentence_vectors``), after the
        deletions so that no work is spent on chunks about to go.
        """
        started = time.perf_counter()
        report = IndexReport()
        known = self.store.document_hashes()
        candidates: list[_Candidate] = []
        roots: set[str] = set()
        for path in paths:
            path = Path(path)
            if path.is_dir():
                root = str(path.resolve())
                roots.add(root)
                candidates.extend(_Candidate(p, p.relative_to(path).as_posix(), root) for p in _walk(path))
            elif path.is_file():
                candidates.append(_Candidate(path, path.name, str(path.resolve().parent)))
            else:
                report.skipped.append(f"{path}: no such file or folder")

        seen: set[str] = set()

        def loaded() -> Iterator[Document]:
            for cand in candidates:
                seen.add(cand.doc_id)  # a bad new version keeps the old one indexed: nothing is lost
                try:
                    document = load_document(
                        cand.path,
                        doc_id=cand.doc_id,
                        source=str(cand.path),
                        root=cand.root,
                        max_chars=self.max_document_chars,
                    )
                except (LoadError, InvalidInput) as exc:  # unsupported, or over the character cap
                    report.skipped.append(str(exc))
                    log.warning("skipped %s", exc)
                    continue
                yield document

        self.put_changed(loaded(), known=known, report=report, show_progress=show_progress)

        # Files that disappeared from an indexed folder.
        gone = {doc_id for doc_id, (_, root) in known.items() if root in roots and doc_id not in seen}
        for doc_id in sorted(gone):
            self.store.delete_document(doc_id)
            report.removed += 1
        # Chunks left by an interrupted write or delete (this run's, or the service's).
        self.repair()
        self.backfill_sentence_vectors(report=report, show_progress=show_progress)
        report.seconds = time.perf_counter() - started
        return report


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in SUPPORTED or path.suffix.lower() not in _QUIET:
                yield path


# Files we never report as "unsupported" when walking a folder (reference sets, notes for tools).
_QUIET = {".jsonl", ".json"}


# A window is what one embed call sees: big enough that length-sorted batches waste little padding and the
# stages overlap, small enough to bound memory and to show progress.
WINDOW_DOCS = 256
WINDOW_CHARS = 400_000
# Chunks per embed call and metadata update when backfilling: a kill loses at most one batch of work.
BACKFILL_CHUNKS = 256


# The splitter is pure Python (it holds the GIL), so on a machine with cores to spare (a GPU host) it runs in
# forked worker processes; on 2 cores one chunking thread beside the encoder is enough.
CHUNK_WORKERS = min(8, (os.cpu_count() or 1) - 2)
POOL_MIN_DOCS = 32


def _chunk_pool(chunk_tokens: int, overlap: int) -> Pool | None:
    if CHUNK_WORKERS < 2:
        return None
    import multiprocessing

    from index.chunking import _splitter

    _splitter(chunk_tokens, overlap)  # build the splitter before forking, so the workers start warm
    return multiprocessing.get_context("fork").Pool(CHUNK_WORKERS)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def _windows(items: Iterable[Document], *, max_docs: int, max_chars: int) -> Iterator[list[Document]]:
    group: list[Document] = []
    chars = 0
    for item in items:
        group.append(item)
        chars += len(item.text)
        if len(group) >= max_docs or chars >= max_chars:
            yield group
            group, chars = [], 0
    if group:
        yield group


class ProgressBar(Protocol):
    """What the indexer needs of a progress bar (tqdm's, which ships no types)."""

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, show: bool, *, unit: str = "doc", desc: str = "indexing") -> ProgressBar | None:
    if not show or total < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc)
