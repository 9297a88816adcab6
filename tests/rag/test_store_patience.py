"""A full read of a collection (BM25 rebuild, start-up repair, listing) outlasts a Chroma server that is slow for a
few seconds; a question-path call still gives up after RAG_CHROMA_TIMEOUT_S.

At 10^6 chunks a count or a page of the chunks costs seconds on a cold page cache: the first start of a replica
died on the 5 s question timeout (benchmarks/bench_scale.py, README "Growth"). Here the slowness is a real `chroma
run` stopped by SIGSTOP for longer than the timeout, then resumed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.errors import StoreUnavailable
from rag.store import ChromaStore
from rag.types import Chunk, Document
from tests.conftest import ChromaServer

TIMEOUT_S = 1.0
STALL_S = 2.5


def _documents(n: int) -> list[tuple[Document, list[Chunk], np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        text = f"Document {i} is about the harbour of town {i}."
        doc = Document.from_text(doc_id=f"doc{i}", source=f"doc{i}.txt", text=text)
        chunk = Chunk(
            chunk_id=f"doc{i}-0",
            doc_id=doc.doc_id,
            source=doc.source,
            text=text,
            start=0,
            end=len(text),
            index=0,
            content_hash=doc.content_hash,
        )
        v = rng.normal(size=(1, 384)).astype(np.float32)
        out.append((doc, [chunk], v / np.linalg.norm(v)))
    return out


def _stall(server: ChromaServer, seconds: float) -> threading.Thread:
    """Stop the server now and resume it ``seconds`` later."""
    assert server.process is not None
    pid = server.process.pid
    os.killpg(pid, signal.SIGSTOP)

    def resume() -> None:
        time.sleep(seconds)
        os.killpg(pid, signal.SIGCONT)

    thread = threading.Thread(target=resume, daemon=True)
    thread.start()
    return thread


def _gives_up_in_time(store: ChromaStore, server: ChromaServer) -> None:
    resumed = _stall(server, STALL_S)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.list_documents()
    assert time.monotonic() - started < STALL_S
    resumed.join()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    own = ChromaServer(tmp_path / "chroma").start()  # its own: it is stopped by SIGSTOP
    yield own
    if own.process is not None and own.process.poll() is None:
        os.killpg(own.process.pid, signal.SIGCONT)
    own.stop()


def test_a_full_read_outlasts_a_server_slower_than_the_question_timeout(server: ChromaServer) -> None:
    store = ChromaStore(url=server.url, collection="patience", timeout_s=TIMEOUT_S)
    store.replace_documents(_documents(30))
    assert store.count_chunks() == 30

    # A request's own full read (GET /documents) gives up after the timeout.
    _gives_up_in_time(store, server)

    # A full read waits for the server and reads every row.
    resumed = _stall(server, STALL_S)
    started = time.monotonic()
    with store.bulk_reads():
        listed = store.list_documents()
        scanned = [i for ids, _, _ in store.scan_chunks() for i in ids]
    resumed.join()
    assert time.monotonic() - started >= STALL_S - 0.5
    assert len(listed) == 30 and sorted(scanned) == sorted(f"doc{i}-0" for i in range(30))

    # The longer timeout ended with bulk_reads: a request's own full read (GET /documents) has the short one again.
    _gives_up_in_time(store, server)
