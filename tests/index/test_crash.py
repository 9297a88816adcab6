"""Crash safety: kill -9 the indexer in the middle of a large run, rerun it, and the index is exactly complete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from index.chunking import chunk_document
from index.loaders import load_document
from rag.factory import open_store
from tests.conftest import CHROMA_URL, ROOT, make_settings, stored_chunks

# Three ingestion windows (index.pipeline.WINDOW_DOCS = 256): the kill lands after the first is stored.
DOCS = 560
WORDS = "reactor salt valve garden tomato river bridge engine signal harbour lantern archive orbit".split()


def _corpus(folder: Path) -> None:
    rng = random.Random(7)
    folder.mkdir()
    for n in range(DOCS):
        sentences = [
            f"Document {n} sentence {i} says the {rng.choice(WORDS)} near the {rng.choice(WORDS)} "
            f"was checked {rng.randint(1, 999)} times by team {rng.randint(1, 50)}."
            for i in range(rng.randint(2, 12))
        ]
        (folder / f"doc{n:04d}.txt").write_text(" ".join(sentences), encoding="utf-8")


def _expected_chunk_ids(folder: Path, settings) -> set[str]:  # type: ignore[no-untyped-def]
    ids: set[str] = set()
    for path in sorted(folder.iterdir()):
        doc = load_document(path, doc_id=path.name, source=str(path))
        ids.update(
            c.chunk_id for c in chunk_document(doc, chunk_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
        )
    return ids


def _index(folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "index", "--quiet", str(folder)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_kill_9_mid_index_then_rerun_leaves_no_duplicate_or_missing_chunk(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    _corpus(folder)
    settings = make_settings(tmp_path / "data")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_DEVICE": "cpu"}
    if settings.chroma_url:
        env.update(RAG_CHROMA_URL=settings.chroma_url, RAG_COLLECTION=settings.collection)
    expected = _expected_chunk_ids(folder, settings)
    assert len(expected) > DOCS

    first = _index(folder, env)
    killed_at = None
    assert first.stderr is not None
    deadline = time.time() + 600
    for line in first.stderr:  # "indexed N/M documents" after each stored group
        if "indexed " in line and "/" in line:
            done = int(line.split("indexed ")[1].split("/")[0])
            if done >= 1:
                # Somewhere inside the next window: embedding it, or writing its chunks and records.
                time.sleep(random.Random(done).uniform(0.0, 3.0))
                os.kill(first.pid, signal.SIGKILL)
                killed_at = done
                break
        assert time.time() < deadline, "the indexer never reported progress"
    first.wait(timeout=60)
    for pipe in (first.stdout, first.stderr):  # nothing left worth reading; left open, they leak (ResourceWarning)
        assert pipe is not None
        pipe.close()
    assert killed_at is not None and first.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    partial = open_store(settings)
    assert 0 < partial.count_documents() < DOCS, "the kill did not land mid-run"
    del partial

    second = _index(folder, env)
    out, err = second.communicate(timeout=900)
    assert second.returncode == 0, err

    store = open_store(settings)
    snapshot = stored_chunks(store)
    assert len(snapshot.ids) == len(set(snapshot.ids)) == store.count_chunks()
    assert set(snapshot.ids) == expected, (len(set(snapshot.ids) - expected), len(expected - set(snapshot.ids)))
    per_position = Counter((m["doc_id"], m["index"]) for m in snapshot.metadatas)
    assert max(per_position.values()) == 1, "two chunks claim one position of a document"
    docs = store.list_documents()
    assert len(docs) == DOCS and all(d.chunks == per_doc for d, per_doc in _chunk_counts(docs, snapshot))
    assert store.stale_chunk_ids() == []

    third = _index(folder, env)
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0 and f"added=0 updated=0 unchanged={DOCS}" in out, out + err
    assert CHROMA_URL is None or settings.chroma_url == CHROMA_URL


def _chunk_counts(docs, snapshot):  # type: ignore[no-untyped-def]
    counts = Counter(str(m["doc_id"]) for m in snapshot.metadatas)
    return [(d, counts[d.doc_id]) for d in docs]
