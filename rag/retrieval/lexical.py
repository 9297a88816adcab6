"""The lexical side of retrieval: BM25 over every current chunk, updated by the changed documents only.

A write costs O(document), not O(collection). Each write adds a change-log entry to the shared store (the ids of the
documents it changed, rag.store ``bump_generation``); every replica reads the entries it has not applied and
re-reads only those documents. The index is a list of immutable segments (one per applied batch of documents, merged
now and then, as Lucene does) with a per-segment mask of the chunks still current; BM25's statistics (document
frequencies, the number of chunks, their mean length) are kept for the live chunks only, so scores equal those of an
index built from scratch over the same chunks (``tests/rag/test_lexical.py``).

Questions read an immutable ``LexicalIndex``: the last consistent one, swapped atomically when a newer one is ready,
so a question never waits for a rebuild. How stale it may be (``LexicalSide``):
- this process's own writes are applied before the write returns (read-your-writes);
- another replica's write is seen by the next question here: it finds the store's counter moved, and waits up to
  ``wait_s`` for the catch-up (a one-document change takes milliseconds), else answers from the index it has;
- with the refresher running (``rag serve``), the log is also read every ``poll_s`` seconds, so an idle replica is
  never more than ``poll_s`` plus one catch-up behind.
A replica rebuilds from the whole collection only at its first start (no cache), when it is too far behind (more
than ``REBUILD_AFTER_DOCS`` changed documents), when the log was trimmed past it, or when the store is a new one.
The index is saved beside the service (``cache_path``) and loaded at start, then caught up from the log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import sparse

from rag.errors import StoreUnavailable
from rag.retrieval.bm25 import K1, B
from rag.store import CHANGE_WINDOW_NS, Change, ChromaStore, IndexedDocument
from rag.text import terms

log = logging.getLogger(__name__)

# More changed documents than this since the last catch-up: rebuild from the collection instead of applying them.
REBUILD_AFTER_DOCS = 5_000
# Small segments are merged into one when there are more than this many; all are merged (and deleted chunks
# dropped) when the small ones hold a quarter of the largest, or a quarter of it is deleted.
MAX_SMALL_SEGMENTS = 8
CACHE_FORMAT = 1


# --- segments ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Segment:
    """Chunks added together: their term counts chunk by chunk (to update document frequencies when one goes) and
    term by term (the postings a query reads). Never changed once built."""

    ids: list[str]
    doc_ids: list[str]
    lengths: np.ndarray  # float32, terms per chunk
    chunk_ptr: np.ndarray  # int64 (n + 1): chunk i's terms are chunk_terms[chunk_ptr[i]:chunk_ptr[i + 1]]
    chunk_terms: np.ndarray  # int32 term ids, each once per chunk
    chunk_tf: np.ndarray  # uint16 counts, aligned with chunk_terms
    terms: np.ndarray  # int32 sorted term ids that occur here
    term_ptr: np.ndarray  # int64 (len(terms) + 1): term j's postings are post_cols/post_tf[term_ptr[j]:...]
    post_cols: np.ndarray  # int32 chunk positions in this segment
    post_tf: np.ndarray  # uint16

    @property
    def size(self) -> int:
        return len(self.ids)

    @classmethod
    def from_texts(cls, ids: list[str], doc_ids: list[str], texts: Sequence[str], vocab: dict[str, int]) -> _Segment:
        return cls.from_counts(ids, doc_ids, [_counts(text, vocab) for text in texts], len(vocab))

    @classmethod
    def from_counts(
        cls, ids: list[str], doc_ids: list[str], counts: Sequence[tuple[np.ndarray, np.ndarray]], vocab_size: int
    ) -> _Segment:
        """From each chunk's (term ids, term counts), as ``_counts`` makes them."""
        sizes = np.fromiter((c[0].size for c in counts), dtype=np.int64, count=len(counts))
        lengths = np.fromiter((float(c[1].sum()) for c in counts), dtype=np.float32, count=len(counts))
        return cls.from_arrays(
            ids,
            doc_ids,
            lengths,
            np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes)]),
            np.concatenate([c[0] for c in counts] or [_EMPTY_COLS]).astype(np.int32, copy=False),
            np.concatenate([c[1] for c in counts] or [_EMPTY_TF]).astype(np.uint16, copy=False),
            vocab_size,
        )

    @classmethod
    def from_arrays(
        cls,
        ids: list[str],
        doc_ids: list[str],
        lengths: np.ndarray,
        chunk_ptr: np.ndarray,
        chunk_terms: np.ndarray,
        chunk_tf: np.ndarray,
        vocab_size: int,
    ) -> _Segment:
        # Term-major postings by a CSR -> CSC conversion (a counting sort in C), then only the rows that occur.
        matrix = sparse.csr_matrix((chunk_tf, chunk_terms, chunk_ptr), shape=(len(ids), max(vocab_size, 1)))
        csc = matrix.tocsc()
        indptr = csc.indptr.astype(np.int64)
        present = np.flatnonzero(np.diff(indptr)).astype(np.int32)
        term_ptr = np.append(indptr[present], indptr[-1]) if present.size else np.zeros(1, dtype=np.int64)
        return cls(
            ids=ids,
            doc_ids=doc_ids,
            lengths=lengths.astype(np.float32, copy=False),
            chunk_ptr=chunk_ptr,
            chunk_terms=chunk_terms,
            chunk_tf=chunk_tf,
            terms=present,
            term_ptr=term_ptr,
            post_cols=csc.indices.astype(np.int32, copy=False),
            post_tf=csc.data.astype(np.uint16, copy=False),
        )

    def postings(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        j = int(np.searchsorted(self.terms, term_id))
        if j == self.terms.size or self.terms[j] != term_id:
            return _EMPTY_COLS, _EMPTY_TF
        lo, hi = self.term_ptr[j], self.term_ptr[j + 1]
        return self.post_cols[lo:hi], self.post_tf[lo:hi]

    def terms_of(self, cols: np.ndarray) -> np.ndarray:
        """The term ids of these chunks (repeated across chunks), for document-frequency updates."""
        if not cols.size:
            return _EMPTY_COLS
        return np.concatenate([self.chunk_terms[self.chunk_ptr[c] : self.chunk_ptr[c + 1]] for c in cols])


_EMPTY_COLS = np.zeros(0, dtype=np.int32)
_EMPTY_TF = np.zeros(0, dtype=np.uint16)


def _counts(text: str, vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """A text's (term ids, counts), adding new terms to ``vocab``."""
    counted = Counter(terms(text))
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in counted), dtype=np.int32, count=len(counted))
    return ids, np.fromiter((min(c, 65535) for c in counted.values()), dtype=np.uint16, count=len(counted))


def _merge(segments: Sequence[_Segment], alive: Sequence[np.ndarray], vocab_size: int) -> _Segment:
    """One segment holding the live chunks of ``segments``, in order."""
    ids: list[str] = []
    doc_ids: list[str] = []
    lengths, ptr_parts, term_parts, tf_parts = [], [], [], []
    offset = 0
    for seg, live in zip(segments, alive, strict=True):
        keep = np.flatnonzero(live)
        ids.extend(seg.ids[i] for i in keep)
        doc_ids.extend(seg.doc_ids[i] for i in keep)
        lengths.append(seg.lengths[keep])
        starts, ends = seg.chunk_ptr[keep], seg.chunk_ptr[keep + 1]
        counts = ends - starts
        # Gather each kept chunk's slice of the entry arrays in one vectorised index.
        index = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        term_parts.append(seg.chunk_terms[index])
        tf_parts.append(seg.chunk_tf[index])
        ptr_parts.append(offset + np.cumsum(counts))
        offset += int(counts.sum())
    ptr = np.concatenate([np.zeros(1, dtype=np.int64), *ptr_parts]).astype(np.int64)
    return _Segment.from_arrays(
        ids,
        doc_ids,
        np.concatenate(lengths) if lengths else np.zeros(0, np.float32),
        ptr,
        np.concatenate(term_parts).astype(np.int32) if term_parts else _EMPTY_COLS,
        np.concatenate(tf_parts).astype(np.uint16) if tf_parts else _EMPTY_TF,
        vocab_size,
    )


# --- the index a question reads ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LexicalIndex:
    """BM25 over the current chunks, as of store generation ``generation``. Immutable: updates make a new one."""

    generation: int
    segments: tuple[_Segment, ...]
    alive: tuple[np.ndarray, ...]  # bool per segment: the chunk is still current
    vocab: dict[str, int]  # shared by successive indexes and only ever added to; ``df`` bounds what this one knows
    df: np.ndarray  # int64 document frequency per term id, live chunks only
    size: int  # live chunks
    total_length: float
    doc_positions: dict[str, tuple[int, np.ndarray]]  # doc_id -> (segment, positions)
    doc_hashes: dict[str, str]
    doc_pages: dict[str, tuple[int, ...]]  # where each page begins, for the documents with pages (PDFs)
    k1: float = K1
    b: float = B

    @classmethod
    def empty(cls, generation: int = 0) -> LexicalIndex:
        return cls(generation, (), (), {}, np.zeros(0, np.int64), 0, 0.0, {}, {}, {})

    # --- reads
    def idf_of(self, term: str) -> float:
        """Inverse document frequency of a stemmed term (the maximum for an unseen one); Lucene's, never negative."""
        idx = self.vocab.get(term)
        df = int(self.df[idx]) if idx is not None and idx < self.df.size else 0
        if not self.size:
            return 0.0
        return math.log1p((self.size - df + 0.5) / (df + 0.5))

    def top(self, query: str, n: int) -> list[tuple[str, str, float]]:
        """The ``n`` best (chunk id, doc id, BM25 score) with a positive score, best first."""
        term_ids = [self.vocab[t] for t in terms(query) if t in self.vocab]
        term_ids = [t for t in term_ids if t < self.df.size and self.df[t] > 0]
        if not term_ids or not self.size or n <= 0:
            return []
        avgdl = max(self.total_length / self.size, 1e-9)
        idf = {t: math.log1p((self.size - self.df[t] + 0.5) / (self.df[t] + 0.5)) for t in set(term_ids)}
        found: list[tuple[float, int, int]] = []
        for s, (seg, live) in enumerate(zip(self.segments, self.alive, strict=True)):
            cols_parts, weight_parts = [], []
            for t in term_ids:  # a term asked twice counts twice, as in a sum of matrix rows
                cols, tf = seg.postings(t)
                if not cols.size:
                    continue
                tf = tf.astype(np.float32)
                norm = self.k1 * (1 - self.b + self.b * seg.lengths[cols] / avgdl)
                cols_parts.append(cols)
                weight_parts.append(np.float32(idf[t]) * tf * (self.k1 + 1) / (tf + norm))
            if not cols_parts:
                continue
            cols = np.concatenate(cols_parts)
            weights = np.concatenate(weight_parts)
            if cols.size * 8 >= seg.size:  # many postings: one dense pass over the segment
                dense = np.bincount(cols, weights=weights, minlength=seg.size)
                uniq = np.flatnonzero(dense).astype(np.int32)
                scores = dense[uniq].astype(np.float32)
            else:
                uniq, inverse = np.unique(cols, return_inverse=True)
                scores = np.bincount(inverse, weights=weights).astype(np.float32)
            scores[~live[uniq]] = 0.0
            if not uniq.size:
                continue
            k = min(n, uniq.size)
            best = np.argpartition(-scores, k - 1)[:k]
            found.extend((float(scores[i]), s, int(uniq[i])) for i in best if scores[i] > 0)
        found.sort(key=lambda f: (-f[0], self.segments[f[1]].ids[f[2]]))
        return [(self.segments[s].ids[c], self.segments[s].doc_ids[c], score) for score, s, c in found[:n]]

    def chunk_count(self, doc_id: str) -> int:
        got = self.doc_positions.get(doc_id)
        return 0 if got is None else int(got[1].size)

    # --- updates (each returns a new index)
    def apply(
        self, docs: dict[str, IndexedDocument | None], *, titles: bool, generation: int | None = None
    ) -> LexicalIndex:
        """This index with each named document replaced by its given state (None: the document is gone)."""
        alive = list(self.alive)
        copied: set[int] = set()
        df = self.df.copy()
        size, total = self.size, self.total_length
        positions = dict(self.doc_positions)
        hashes = dict(self.doc_hashes)
        pages = dict(self.doc_pages)
        for doc_id in docs:
            old = positions.pop(doc_id, None)
            hashes.pop(doc_id, None)
            pages.pop(doc_id, None)
            if old is None:
                continue
            s, cols = old
            if s not in copied:
                alive[s] = alive[s].copy()
                copied.add(s)
            cols = cols[alive[s][cols]]
            alive[s][cols] = False
            seg = self.segments[s]
            removed = seg.terms_of(cols)
            if removed.size:
                df -= np.bincount(removed, minlength=df.size)[: df.size]
            size -= cols.size
            total -= float(seg.lengths[cols].sum())
        ids: list[str] = []
        owners: list[str] = []
        texts: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        for doc_id, doc in docs.items():
            if doc is None:
                continue
            hashes[doc_id] = doc.content_hash
            if doc.page_starts:
                pages[doc_id] = doc.page_starts
            lo = len(ids)
            for chunk_id, text, start in doc.chunks:
                ids.append(chunk_id)
                owners.append(doc_id)
                texts.append(f"{doc.title}\n\n{text}" if titles and doc.title and start > 0 else text)
            spans[doc_id] = (lo, len(ids))
        segments = list(self.segments)
        if ids:
            seg = _Segment.from_texts(ids, owners, texts, self.vocab)
            if df.size < len(self.vocab):
                df = np.concatenate([df, np.zeros(len(self.vocab) - df.size, np.int64)])
            df += np.bincount(seg.chunk_terms, minlength=df.size)[: df.size]
            s = len(segments)
            segments.append(seg)
            alive.append(np.ones(seg.size, dtype=bool))
            for doc_id, (lo, hi) in spans.items():
                positions[doc_id] = (s, np.arange(lo, hi, dtype=np.int64))
            size += seg.size
            total += float(seg.lengths.sum())
        return replace(
            self,
            generation=self.generation if generation is None else generation,
            segments=tuple(segments),
            alive=tuple(alive),
            df=df,
            size=size,
            total_length=total,
            doc_positions=positions,
            doc_hashes=hashes,
            doc_pages=pages,
        )

    def needs_merge(self) -> bool:
        if len(self.segments) <= 1:
            return bool(self.segments) and not self.alive[0].all() and _dead_share(self.alive[0]) > 0.25
        base = max(range(len(self.segments)), key=lambda s: self.segments[s].size)
        small = [s for s in range(len(self.segments)) if s != base]
        return (
            len(small) > MAX_SMALL_SEGMENTS
            or sum(self.segments[s].size for s in small) > self.segments[base].size / 4
            or _dead_share(self.alive[base]) > 0.25
        )

    def merged(self) -> LexicalIndex:
        """The same index in as few segments as the merge policy wants (the chunks and scores do not change)."""
        if not self.segments:
            return self
        base = max(range(len(self.segments)), key=lambda s: self.segments[s].size)
        small = [s for s in range(len(self.segments)) if s != base]
        everything = (
            sum(self.segments[s].size for s in small) > self.segments[base].size / 4
            or _dead_share(self.alive[base]) > 0.25
        )
        groups = [list(range(len(self.segments)))] if everything else [[base], small]
        segments: list[_Segment] = []
        alive: list[np.ndarray] = []
        for group in groups:
            if not group:
                continue
            if len(group) == 1 and self.alive[group[0]].all():
                segments.append(self.segments[group[0]])
                alive.append(self.alive[group[0]])
                continue
            seg = _merge([self.segments[s] for s in group], [self.alive[s] for s in group], len(self.vocab))
            segments.append(seg)
            alive.append(np.ones(seg.size, dtype=bool))
        return replace(self, segments=tuple(segments), alive=tuple(alive), doc_positions=_positions(segments))


def _dead_share(live: np.ndarray) -> float:
    return 1.0 - float(live.mean()) if live.size else 0.0


def _positions(segments: Sequence[_Segment]) -> dict[str, tuple[int, np.ndarray]]:
    """doc_id -> (segment, positions). A document's chunks are added together, and merges keep their order, so
    they form one run in one segment."""
    positions: dict[str, tuple[int, np.ndarray]] = {}
    for s, seg in enumerate(segments):
        owners = seg.doc_ids
        lo = 0
        for i in range(1, len(owners) + 1):
            if i == len(owners) or owners[i] != owners[lo]:
                positions[owners[lo]] = (s, np.arange(lo, i, dtype=np.int64))
                lo = i
    return positions


def build_index(docs: Sequence[IndexedDocument], *, titles: bool, generation: int) -> LexicalIndex:
    """An index over these documents, from scratch."""
    return LexicalIndex.empty(generation).apply({d.doc_id: d for d in docs}, titles=titles)


# --- the cache beside the service ----------------------------------------------------------------------------
def save_index(
    index: LexicalIndex,
    path: Path,
    *,
    epoch: str,
    pointer: int,
    applied: dict[str, int],
    vocab: list[str] | None = None,
) -> None:
    """Write the index (merged into one segment) atomically, with where in the change log it stands.

    ``vocab``: the terms in id order, listed by the caller while no update adds to the shared vocabulary (ids are
    given in insertion order, so the dictionary's order is id order); listed here if not given.
    """
    vocab = list(index.vocab) if vocab is None else vocab
    one = _merge(index.segments, index.alive, len(vocab)) if index.segments else None
    header = {
        "format": CACHE_FORMAT,
        "epoch": epoch,
        "generation": index.generation,
        "pointer": pointer,
        "applied": applied,
        "vocab": vocab,
        "ids": one.ids if one else [],
        "doc_ids": one.doc_ids if one else [],
        "hashes": index.doc_hashes,
        "pages": {k: list(v) for k, v in index.doc_pages.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            empty = np.zeros(0)
            np.savez(
                fh,
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                lengths=one.lengths if one else empty,
                chunk_ptr=one.chunk_ptr if one else np.zeros(1, np.int64),
                chunk_terms=one.chunk_terms if one else empty,
                chunk_tf=one.chunk_tf if one else empty,
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CachedIndex:
    index: LexicalIndex
    epoch: str
    pointer: int
    applied: dict[str, int]


def load_index(path: Path) -> CachedIndex | None:
    """The saved index, or None when there is none or it cannot be read (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(data["header"].tobytes())
            if header.get("format") != CACHE_FORMAT:
                return None
            vocab = {term: i for i, term in enumerate(header["vocab"])}
            ids = list(header["ids"])
            segments: tuple[_Segment, ...] = ()
            alive: tuple[np.ndarray, ...] = ()
            df = np.zeros(len(vocab), np.int64)
            if ids:
                seg = _Segment.from_arrays(
                    ids,
                    list(header["doc_ids"]),
                    data["lengths"].astype(np.float32),
                    data["chunk_ptr"].astype(np.int64),
                    data["chunk_terms"].astype(np.int32),
                    data["chunk_tf"].astype(np.uint16),
                    len(vocab),
                )
                segments, alive = (seg,), (np.ones(seg.size, dtype=bool),)
                df += np.bincount(seg.chunk_terms, minlength=len(vocab))
        index = LexicalIndex(
            generation=int(header["generation"]),
            segments=segments,
            alive=alive,
            vocab=vocab,
            df=df,
            size=sum(s.size for s in segments),
            total_length=float(sum(float(s.lengths.sum()) for s in segments)),
            doc_positions=_positions(segments),
            doc_hashes=dict(header["hashes"]),
            doc_pages={k: tuple(v) for k, v in header["pages"].items()},
        )
        applied = {str(k): int(v) for k, v in header["applied"].items()}
        return CachedIndex(index, str(header["epoch"]), int(header["pointer"]), applied)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: rebuild rather than fail the start
        log.warning("ignoring the BM25 cache %s (%s: %s); rebuilding it", path, type(exc).__name__, exc)
        return None


# --- keeping it current ----------------------------------------------------------------------------------------
class LexicalSide:
    """The current ``LexicalIndex`` of one collection, kept up to date from the change log."""

    def __init__(
        self,
        store: ChromaStore,
        *,
        titles: bool = True,
        cache_path: Path | None = None,
        wait_s: float = 0.2,
        poll_s: float = 1.0,
        save_every_s: float = 60.0,
    ) -> None:
        self.store = store
        self.titles = titles
        self.cache_path = cache_path
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.save_every_s = save_every_s
        self._index: LexicalIndex | None = None
        self._epoch = ""
        self._pointer = 0  # the largest change-log value read from the log
        self._applied: dict[str, int] = {}  # entries applied within CHANGE_WINDOW_NS of the pointer
        self._lock = threading.RLock()  # one updater at a time
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._read_log = False
        self._saved_at = 0.0
        self.rebuilds = 0  # full reads of the collection, for tests and logs
        if store is not None:  # (unit tests of fusion build a retriever without a store)
            store.listeners.append(self._own_change)

    # --- the question path
    def current(self) -> LexicalIndex:
        """The index a question uses: caught up with the store, or, if that takes longer than ``wait_s`` while the
        refresher works on it, the last consistent one."""
        index = self._index
        if index is None:
            return self.catch_up()
        generation = self.store.generation()
        if generation == index.generation:
            return index
        if self._thread is None:
            return self.catch_up()
        self._wake.set()
        deadline = time.monotonic() + self.wait_s
        with self._changed:
            while (self._index is None or self._index.generation != generation) and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        current = self._index
        assert current is not None
        return current

    # --- updating
    def catch_up(self) -> LexicalIndex:
        """Apply every change-log entry not applied yet (or rebuild); returns the new index."""
        with self._lock:
            rebuilds_before = self.rebuilds
            index = self._index
            if index is None:
                index = self._start()
            generation = self.store.generation()
            if generation != index.generation or self._read_log:
                index = self._apply_log(index, generation)
                self._read_log = False
            if index.needs_merge():
                index = index.merged()
            rebuilt = self.rebuilds != rebuilds_before
            self._publish(index)
        if rebuilt and self._thread is None:
            self.save()  # without a refresher (`rag ask`, `rag eval`) the next process starts from this rebuild
        return index

    def _start(self) -> LexicalIndex:
        """Load the cache if it belongs to this store and the log still covers it, else rebuild."""
        if self.cache_path is not None:
            t0 = time.perf_counter()
            cached = load_index(self.cache_path)
            if cached is not None:
                if cached.epoch == self.store.epoch():
                    self._epoch, self._pointer, self._applied = cached.epoch, cached.pointer, dict(cached.applied)
                    log.info(
                        "BM25 index loaded from %s: %d chunks in %.2f s",
                        self.cache_path,
                        cached.index.size,
                        time.perf_counter() - t0,
                    )
                    self._read_log = True  # the first catch-up reads the log from the cache's pointer
                    return cached.index
                log.info("the BM25 cache %s belongs to another store: rebuilding", self.cache_path)
        return self._rebuild()

    def _rebuild(self) -> LexicalIndex:
        """The index from one paged read of the collection, a page in memory at a time (only term counts are kept:
        ~600 bytes a chunk, where the pages carry ~6 KB with their sentence vectors). Its calls may take the store's
        bulk timeout: at 10^6 chunks a page or count costs seconds."""
        with self.store.bulk_reads():
            return self._read_collection()

    def _read_collection(self) -> LexicalIndex:
        t0 = time.perf_counter()
        # Every entry up to this generation is in the read that follows; those of the last window are marked applied,
        # so the next catch-up does not read their documents again. Writes during the read are after it in the log.
        generation = self.store.generation()
        changes = self.store.changes_since(generation - CHANGE_WINDOW_NS, limit=10**6)
        records = {d.doc_id: d for d in self.store.list_documents()}
        vocab: dict[str, int] = {}
        found: list[tuple[str, int, str, tuple[np.ndarray, np.ndarray]]] = []  # (doc, start, chunk id, counts)
        for ids, texts, metas in self.store.scan_chunks():
            for chunk_id, text, meta in zip(ids, texts, metas, strict=True):
                record = records.get(str(meta.get("doc_id")))
                if record is None or meta.get("content_hash") != record.content_hash:
                    continue  # no reader sees it: the repair deletes it
                start = int(meta.get("start", 0))
                titled = f"{record.title}\n\n{text}" if self.titles and record.title and start > 0 else text
                found.append((record.doc_id, start, chunk_id, _counts(titled, vocab)))
        found.sort(key=lambda f: (f[0], f[1], f[2]))
        segment = _Segment.from_counts([f[2] for f in found], [f[0] for f in found], [f[3] for f in found], len(vocab))
        del found
        segments = (segment,) if segment.size else ()
        index = LexicalIndex(
            generation=generation,
            segments=segments,
            alive=tuple(np.ones(s.size, dtype=bool) for s in segments),
            vocab=vocab,
            df=np.bincount(segment.chunk_terms, minlength=len(vocab)).astype(np.int64),
            size=segment.size,
            total_length=float(segment.lengths.sum()),
            doc_positions=_positions(segments),
            doc_hashes={d: r.content_hash for d, r in records.items()},
            doc_pages={d: r.page_starts for d, r in records.items() if r.page_starts},
        )
        self._epoch = self.store.epoch() if changes is None else changes.epoch
        self._pointer = generation
        self._applied = {} if changes is None else {c.entry_id: c.seq for c in changes.entries if c.seq <= generation}
        self.rebuilds += 1
        self._dirty = True
        log.info("BM25 index built from the collection: %d chunks in %.2f s", index.size, time.perf_counter() - t0)
        return index

    def _apply_log(self, index: LexicalIndex, generation: int) -> LexicalIndex:
        changes = self.store.changes_since(
            self._pointer - CHANGE_WINDOW_NS, limit=REBUILD_AFTER_DOCS + len(self._applied)
        )
        # The index holds every entry up to its generation; entries after it that the trim deleted are lost to it.
        # (An index of a store never written, generation 0, has nothing to lose: the trim only removes entries over
        # a week old, and the reconcile pass at every start is the safety net for the rest.)
        trimmed = 0 < index.generation < changes.trimmed_before if changes else False
        if changes is None or changes.epoch != self._epoch or trimmed:
            log.info("BM25 index too far behind the change log (or the store is new): rebuilding")
            return self._rebuild()
        fresh = [c for c in changes.entries if c.entry_id not in self._applied]
        doc_ids = sorted({d for c in fresh for d in c.doc_ids})
        if len(doc_ids) > REBUILD_AFTER_DOCS:
            return self._rebuild()
        if doc_ids:
            index = index.apply(self.store.indexed_documents(doc_ids), titles=self.titles)
            self._dirty = True
        for c in fresh:
            self._applied[c.entry_id] = c.seq
        self._pointer = max([self._pointer, *(c.seq for c in fresh)])
        floor = self._pointer - CHANGE_WINDOW_NS
        self._applied = {k: v for k, v in self._applied.items() if v > floor}
        return replace(index, generation=generation)

    def _own_change(self, change: Change) -> None:
        """A write of this process: applied before the write returns, so the writer's next question sees it.

        The documents are read back from the store, not taken from the write: two writes of one document by this
        process may reach here in either order, and the store holds the later. If a rebuild holds the index for
        longer than a second, the write returns and the change log brings the change in after the rebuild.
        """
        if not self._lock.acquire(timeout=1.0):
            self._wake.set()
            return
        try:
            index = self._index
            if index is None or change.entry_id in self._applied:
                return
            index = index.apply(self.store.indexed_documents(change.doc_ids), titles=self.titles)
            self._applied[change.entry_id] = change.seq
            self._dirty = True
            self._publish(index)
        finally:
            self._lock.release()

    def reconcile(self) -> int:
        """Compare the index with every document record and re-read those that differ (a writer killed between its
        write and its change-log entry leaves one); returns how many. One read of the records, not the chunks."""
        with self._lock, self.store.bulk_reads():
            index = self._index or self.catch_up()
            records = {d.doc_id: d for d in self.store.list_documents()}
            differ = {d for d, info in records.items() if index.doc_hashes.get(d) != info.content_hash}
            differ |= {d for d in index.doc_hashes if d not in records}
            if differ:
                log.warning("BM25 index: %d documents differed from their records; re-read", len(differ))
                self._publish(index.apply(self.store.indexed_documents(sorted(differ)), titles=self.titles))
                self._dirty = True
            return len(differ)

    def _publish(self, index: LexicalIndex) -> None:
        with self._changed:
            self._index = index
            self._changed.notify_all()

    # --- the refresher (rag serve)
    def start(self) -> None:
        """Read the change log every ``poll_s`` in a thread of its own, merge segments and save the cache there."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bm25-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout=30)
        self._thread = None
        self.save()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.wait(self.poll_s if not failures else min(30.0, self.poll_s * 2**failures))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.catch_up()
                failures = 0
                if self._dirty and time.monotonic() - self._saved_at > self.save_every_s:
                    self.save()
            except StoreUnavailable:
                failures += 1
            except Exception:
                failures += 1
                log.exception("the BM25 refresher failed; retrying")

    def save(self) -> None:
        """Write the cache now, if there is one to write and anything changed since the last save."""
        if self.cache_path is None:
            return
        with self._lock:
            index = self._index
            if index is None or not self._dirty:
                return
            pointer, applied, epoch = self._pointer, dict(self._applied), self._epoch
            vocab = list(index.vocab)  # updates add to it under this lock only
            self._dirty = False
        try:
            t0 = time.perf_counter()
            save_index(index, self.cache_path, epoch=epoch, pointer=pointer, applied=applied, vocab=vocab)
            self._saved_at = time.monotonic()
            log.info("BM25 index saved to %s in %.2f s", self.cache_path, time.perf_counter() - t0)
        except OSError as exc:
            self._dirty = True
            log.warning("could not save the BM25 index to %s: %s", self.cache_path, exc)
