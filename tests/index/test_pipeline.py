"""Incremental indexing on a real Chroma in a temp dir, with the real model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from index.pipeline import Indexer
from rag.factory import open_store
from rag.retrieval.hybrid import HybridRetriever
from rag.store import chunk_texts
from rag.types import Document
from tests.conftest import ROOT, SEED_DOC_ID, copy_seeds, make_settings, stored_chunks
from tests.pdfs import pdf_file

ALPHA = "Alpha reactors run on molten salt. They were first tested in 1965 at Oak Ridge."
BETA = "Beta gardens grow purple tomatoes. The tomatoes ripen in late September."


@pytest.fixture
def indexer(tmp_path: Path, embedder) -> Indexer:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data")
    return Indexer(store=open_store(settings), embedder=embedder, chunk_tokens=200, chunk_overlap=32)


def _all_chunk_ids(indexer: Indexer) -> list[str]:
    return sorted(stored_chunks(indexer.store).ids)


def test_index_paths_reindex_unchanged_adds_nothing(indexer: Indexer, tmp_path: Path) -> None:
    folder = copy_seeds(tmp_path / "docs")
    (folder / "alpha.txt").write_text(ALPHA)
    first = indexer.index_paths([folder])
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    ids = _all_chunk_ids(indexer)
    generation = indexer.store.generation()
    second = indexer.index_paths([folder])
    assert (second.added, second.updated, second.unchanged, second.removed, second.chunks) == (0, 0, 2, 0, 0)
    assert _all_chunk_ids(indexer) == ids
    assert indexer.store.generation() == generation


def test_index_paths_changed_file_replaces_its_chunks(indexer: Indexer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "alpha.txt").write_text(ALPHA)
    (folder / "beta.md").write_text(BETA)
    indexer.index_paths([folder])
    beta_ids = set(indexer.store.chunk_ids_of("beta.md"))
    (folder / "alpha.txt").write_text("Alpha reactors were abandoned. Nobody remembers them.")
    report = indexer.index_paths([folder])
    assert (report.updated, report.unchanged) == (1, 1)
    texts = stored_chunks(indexer.store).texts
    assert not any("molten salt" in t for t in texts), "stale chunk left behind"
    assert any("abandoned" in t for t in texts)
    assert set(indexer.store.chunk_ids_of("beta.md")) == beta_ids
    doc = indexer.store.get_document("alpha.txt")
    assert doc is not None and doc.text == "Alpha reactors were abandoned. Nobody remembers them."


def test_index_paths_removed_file_loses_its_chunks_and_bm25_follows(indexer: Indexer, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "alpha.txt").write_text(ALPHA)
    (folder / "beta.txt").write_text(BETA)
    indexer.index_paths([folder])
    retriever = HybridRetriever(store=indexer.store, embedder=embedder)
    assert {p.doc_id for p in retriever.retrieve("molten salt reactors", top_k=5)} >= {"alpha.txt"}
    (folder / "alpha.txt").unlink()
    report = indexer.index_paths([folder])
    assert report.removed == 1
    assert indexer.store.get_document("alpha.txt") is None
    assert indexer.store.chunk_ids_of("alpha.txt") == []
    # The same retriever object notices the change: its BM25 side must not return the removed chunks.
    assert retriever.lexical().size == indexer.store.count_chunks()
    assert {p.doc_id for p in retriever.retrieve("molten salt reactors", top_k=5)} == {"beta.txt"}


def test_index_paths_other_folder_does_not_remove_first(indexer: Indexer, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "alpha.txt").write_text(ALPHA)
    (two / "beta.txt").write_text(BETA)
    indexer.index_paths([one])
    report = indexer.index_paths([two])
    assert report.removed == 0
    assert {d.doc_id for d in indexer.store.list_documents()} == {"alpha.txt", "beta.txt"}


def _write_bad_files(folder: Path) -> None:
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00data")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "sheet.xlsx").write_bytes(b"PK\x03\x04 not really")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 garbage that is not a pdf")
    (folder / "dangling.md").symlink_to(folder / "does-not-exist.md")


def test_index_paths_bad_files_are_reported_and_skipped(indexer: Indexer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "alpha.txt").write_text(ALPHA)
    _write_bad_files(folder)
    report = indexer.index_paths([folder])
    assert report.added == 1
    reasons = "\n".join(report.skipped)
    for name in ("binary.txt", "latin1.txt", "sheet.xlsx", "broken.pdf", "dangling.md"):
        assert name in reasons
    assert "UTF-8" in reasons and "unsupported" in reasons and "binary" in reasons


def test_index_paths_bad_new_version_keeps_old_one(indexer: Indexer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "alpha.txt").write_text(ALPHA)
    indexer.index_paths([folder])
    (folder / "alpha.txt").write_bytes(b"\xff\xfe\x00garbage")
    report = indexer.index_paths([folder])
    assert report.removed == 0 and len(report.skipped) == 1
    doc = indexer.store.get_document("alpha.txt")
    assert doc is not None and "molten salt" in (doc.text or "")


def test_index_paths_loads_html_and_pdf(indexer: Indexer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "page.html").write_text(
        "<html><head><title>Reactors</title><style>p{color:red}</style><script>var x=1;</script></head>"
        "<body><h1>Alpha</h1><p>Alpha reactors run on <b>molten</b> salt.</p></body></html>"
    )
    (folder / "doc.pdf").write_bytes(_pdf_bytes("Gamma rays were discovered by Paul Villard in 1900."))
    report = indexer.index_paths([folder])
    assert report.added == 2, report.skipped
    html = indexer.store.get_document("page.html")
    assert html is not None and html.title == "Reactors"
    assert "Alpha reactors run on\nmolten\nsalt." in (html.text or "") or "molten" in (html.text or "")
    assert "var x" not in (html.text or "") and "color" not in (html.text or "")
    pdf = indexer.store.get_document("doc.pdf")
    assert pdf is not None and "Paul Villard" in (pdf.text or "")


def _pdf_bytes(text: str) -> bytes:
    """A minimal one-page text PDF, built by hand so no extra package is needed."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_file(objects)


def _rag(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_index_exits_nonzero_only_when_nothing_indexed(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_bad_files(bad)
    result = _rag("index", str(bad), data_dir=tmp_path / "data")
    assert result.returncode == 1
    assert "binary.txt" in result.stderr
    (bad / "alpha.txt").write_text(ALPHA)
    result = _rag("index", str(bad), data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "docs added=1" in result.stdout and "chunks=1" in result.stdout


def test_cli_index_then_ask_prints_answer_and_citations(tmp_path: Path) -> None:
    seeds = copy_seeds(tmp_path / "seeds")
    assert _rag("index", str(seeds), data_dir=tmp_path / "data").returncode == 0
    result = _rag("ask", "Who heads the Special VRAEM Commando unit?", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "Leonardo Longa Lopez" in result.stdout
    assert f"[1] {seeds / SEED_DOC_ID}" in result.stdout
    as_json = _rag("ask", "Who heads the Special VRAEM Commando unit?", "--json", data_dir=tmp_path / "data")
    import json

    body = json.loads(as_json.stdout)
    assert body["citations"][0]["doc_id"] == SEED_DOC_ID and body["no_answer"] is False


@pytest.mark.parametrize("workers", [0, 2])
def test_put_many_stores_same_ids_offsets_and_vectors_as_one_by_one(
    indexer: Indexer, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    from index.chunking import chunk_document

    seed = (ROOT / "seeds" / SEED_DOC_ID).read_text(encoding="utf-8")
    texts = [seed, ALPHA, BETA, seed[: len(seed) // 2], (ALPHA + " ") * 40] + [f"{BETA} Plot {i}." for i in range(30)]
    docs = [Document.from_text(doc_id=f"d{i}", source=f"d{i}.txt", text=t) for i, t in enumerate(texts)]
    import index.pipeline as pipeline

    monkeypatch.setattr(pipeline, "WINDOW_DOCS", 12)  # several windows, so the three stages really overlap
    monkeypatch.setattr(pipeline, "CHUNK_WORKERS", workers)  # 2: chunking in forked processes, as on a big host
    total = indexer.put_many(docs)
    expected = [c for d in docs for c in chunk_document(d, chunk_tokens=200, overlap=32)]
    assert total == len(expected)
    got = indexer.store._chunks.get(include=["metadatas", "embeddings", "documents"])  # noqa: SLF001
    by_id = {
        i: (m, e, t)
        for i, m, e, t in zip(got["ids"], got["metadatas"], got["embeddings"], chunk_texts(got), strict=True)
    }
    assert sorted(by_id) == sorted(c.chunk_id for c in expected)
    vectors = indexer.embedder.embed([c.text for c in expected][:10])
    for n, chunk in enumerate(expected):
        meta, emb, text = by_id[chunk.chunk_id]
        assert (meta["doc_id"], meta["start"], meta["end"], meta["index"]) == (
            chunk.doc_id,
            chunk.start,
            chunk.end,
            chunk.index,
        )
        assert text == chunk.text == docs[int(chunk.doc_id[1:])].text[chunk.start : chunk.end]
        if n < 10:
            assert float(vectors[n] @ emb) >= 0.9999
    assert {d.doc_id: d.chunks for d in indexer.store.list_documents()} == {
        d.doc_id: sum(c.doc_id == d.doc_id for c in expected) for d in docs
    }


def test_put_many_chunking_error_propagates_and_writes_nothing_after(
    indexer: Indexer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.pipeline as pipeline

    real = pipeline.chunk_document

    def failing(document, **kwargs):  # type: ignore[no-untyped-def]
        if document.doc_id == "bad":
            raise RuntimeError("disk on fire")
        return real(document, **kwargs)

    monkeypatch.setattr(pipeline, "chunk_document", failing)
    monkeypatch.setattr(pipeline, "WINDOW_DOCS", 1)
    docs = [Document.from_text(doc_id=i, source=f"{i}.txt", text=ALPHA) for i in ("ok", "bad", "later")]
    with pytest.raises(RuntimeError, match="disk on fire"):
        indexer.put_many(docs)
    assert "later" not in {d.doc_id for d in indexer.store.list_documents()}
