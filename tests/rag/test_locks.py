"""Document locks (rag.locks) over a real embedded Chroma."""

from __future__ import annotations

import time
from pathlib import Path

from rag.store import ChromaStore


def test_a_bulk_writer_killed_mid_write_does_not_block_the_next_one(tmp_path: Path) -> None:
    """A killed bulk write leaves an expired lease on each of its documents, all under one owner. The next writer
    takes them over in one call per dead owner; one delete per document outlasted the wait (2,067 documents:
    DocumentBusy after 15 s, seen while building bench_scale's collections)."""
    store = ChromaStore(path=tmp_path / "chroma", collection="locks")
    doc_ids = [f"doc{i:05d}" for i in range(3000)]
    dead = {"owner": "killed-writer", "expires": time.time() - 60}
    for lo in range(0, len(doc_ids), 1000):
        part = doc_ids[lo : lo + 1000]
        store._locks.add(ids=part, embeddings=[[0.0]] * len(part), metadatas=[dead] * len(part))  # noqa: SLF001
    started = time.monotonic()
    with store._doc_locks.locked(doc_ids, wait_s=5.0):  # noqa: SLF001
        owners = store._doc_locks._owners(doc_ids)  # noqa: SLF001
        assert {owner for owner, _ in owners.values()} != {"killed-writer"}
        assert len({owner for owner, _ in owners.values()}) == 1
    assert time.monotonic() - started < 10
    assert store._locks.count() == 0  # noqa: SLF001
