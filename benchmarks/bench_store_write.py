"""Where ingestion time goes, and what makes the store write faster (issue 14, "Bulk ingestion").

Three measurements, each one command (results merged into benchmarks/results/store-write.json):

  python -m benchmarks.bench_store_write pipeline --docs 1000
      `rag index` (Indexer.index_paths) over SciFact documents written as .txt files, with every stage timed by
      perf_counter wrappers (busy time per stage; the stages overlap in threads), then the same documents once more
      with the stages run one after the other (clean per-stage wall time).
  python -m benchmarks.bench_store_write writer --chunks 20000 --variants baseline,b500,...
      The store writer alone, with precomputed vectors: real SciFact chunks (text, embedding, metadata with sentence
      vectors) from an embedded index, copied with jittered vectors. Each variant runs in fresh processes on a fresh
      store (an embedded PersistentClient, or a `chroma run` server with 1-4 writer processes) and reports chunks/s
      and peak RSS of the writer and the server.
  python -m benchmarks.bench_store_write read --chunks 20000
      What keeping the text in a metadata key costs readers: a paged read of the whole collection, dense queries.
  python -m benchmarks.bench_store_write fts --chunks 100000
      SQLite FTS5 (bm25() ranking) as an incremental lexical index beside rag.retrieval.bm25.BM25Index built from
      scratch, over copies of the SQuAD chunks: insert rate, a one-document update, query latency.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "store-write.json"
DATASETS = ROOT.parent / "shared" / "datasets"
SCIFACT_INDEX = Path("/tmp/rag-eval/scifact/chroma")
SQUAD_INDEX = Path("/tmp/rag-eval/squad/chroma")
BASE_CACHE = Path(tempfile.gettempdir()) / "bench-store-write-base.pkl"
BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    print(f"[store-write {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save(section: str, result: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = result
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    log(f"wrote {RESULTS.relative_to(ROOT)} [{section}]")


def rss_mb(pid: int | str = "self") -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def du_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


# --- 1. the pipeline ------------------------------------------------------------------------------------------------
class Timers:
    """Busy seconds per stage, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.perf_counter() - t
                    self.calls[name] += 1

        return timed

    def table(self, wall: float) -> dict[str, Any]:
        return {
            k: {"seconds": round(v, 3), "share_of_wall": round(v / wall, 3), "calls": self.calls[k]}
            for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def instrument(timers: Timers, store: Any, indexer: Any | None) -> list[tuple[Any, str, Any]]:
    """(object, attribute, timed replacement) for every stage worth timing (the store's alone without an indexer)."""
    import chromadb.api.models.Collection as collection_module

    import index.pipeline as pipeline
    import rag.embedding as embedding
    import rag.store as store_module

    collection = collection_module.Collection

    def by_collection(op: str) -> Callable[..., Any]:
        fn = getattr(collection, op)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            kind = "chunks" if self.name.endswith("-chunks") else "docs" if self.name.endswith("-docs") else "locks"
            return timers.wrap(f"store: chroma {op} ({kind})", fn)(self, *args, **kwargs)

        return call

    in_store = [
        (store, "replace_documents", timers.wrap("store total (replace_documents)", store.replace_documents)),
        (store_module, "encode_vectors", timers.wrap("store: encode sentence vectors", store_module.encode_vectors)),
        (store, "bump_generation", timers.wrap("store: bump_generation", store.bump_generation)),
        (collection, "upsert", by_collection("upsert")),
        (collection, "get", by_collection("get")),
        (collection, "delete", by_collection("delete")),
        (collection, "update", by_collection("update")),
    ]
    if indexer is None:
        return in_store
    return in_store + [
        (pipeline, "load_document", timers.wrap("load + normalise (load_document)", pipeline.load_document)),
        (pipeline, "chunk_document", timers.wrap("chunk (chunk_document)", pipeline.chunk_document)),
        (pipeline, "sentence_spans", timers.wrap("encoder: sentence split (sentence_spans)", pipeline.sentence_spans)),
        (embedding, "pool_spans", timers.wrap("encoder: per-sentence pooling (pool_spans)", embedding.pool_spans)),
        (indexer, "_embed", timers.wrap("encoder total (Indexer._embed)", indexer._embed)),  # noqa: SLF001
        (indexer, "repair", timers.wrap("after: repair (reads the collection)", indexer.repair)),
        (
            indexer,
            "backfill_sentence_vectors",
            timers.wrap("after: backfill check (reads the collection)", indexer.backfill_sentence_vectors),
        ),
    ]


def run_pipeline(n_docs: int) -> dict[str, Any]:
    from contextlib import ExitStack

    from benchmarks.bench_ingest import as_text, load_scifact
    from index.chunking import chunk_document
    from index.loaders import load_document
    from index.pipeline import WINDOW_CHARS, WINDOW_DOCS, Indexer, _windows, build_indexer
    from rag.config import Settings
    from rag.factory import build_embedder, open_store

    result: dict[str, Any] = {"machine": machine(), "docs": n_docs}
    raw, _, _ = load_scifact(DATASETS, n_docs)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        src = work / "src"
        src.mkdir()
        for d in raw:
            (src / f"{d['_id']}.txt").write_text(as_text(d), encoding="utf-8")
        settings = Settings(data_dir=work / "a")
        embedder = build_embedder(settings)
        t = time.perf_counter()
        embedder.embed_chunks(["warm up the bulk model"] * 64, [[(0, 4)]] * 64)
        result["model_load_s"] = round(time.perf_counter() - t, 2)
        result["embedder"] = {"device": embedder.device, "precision": embedder.precision}

        # (a) `rag index`: the real, overlapped pipeline, instrumented.
        store = open_store(settings)
        indexer = build_indexer(settings, store=store, embedder=embedder)
        timers = Timers()
        with ExitStack() as stack:
            for obj, name, value in instrument(timers, store, indexer):
                stack.enter_context(patched(obj, name, value))
            t = time.perf_counter()
            report = indexer.index_paths([src])
            wall = time.perf_counter() - t
        log(f"rag index: {report.summary()}")
        result["rag_index"] = {
            "wall_s": round(wall, 2),
            "docs_per_s": round(report.indexed / wall, 1),
            "chunks": report.chunks,
            "chunks_per_s": round(report.chunks / wall, 1),
            "busy": timers.table(wall),
            "note": "busy seconds per stage summed over threads; stages overlap (chunker thread, encoder, writer "
            "thread), so shares add up to more than 1; 'store: chroma ...' and 'encoder: ...' rows are parts of "
            "their totals",
        }

        # (b) The same stages one after another, on a fresh store: each stage's own wall time.
        settings_b = Settings(data_dir=work / "b")
        store_b = open_store(settings_b)
        indexer_b: Indexer = build_indexer(settings_b, store=store_b, embedder=embedder)
        stages: dict[str, float] = {}
        t = time.perf_counter()
        docs = [load_document(p, doc_id=p.name, source=str(p), root=str(src)) for p in sorted(src.iterdir())]
        stages["load + normalise"] = time.perf_counter() - t
        t = time.perf_counter()
        windows = [
            [(d, chunk_document(d, chunk_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)) for d in w]
            for w in _windows(docs, max_docs=WINDOW_DOCS, max_chars=WINDOW_CHARS)
        ]
        stages["chunk"] = time.perf_counter() - t
        t = time.perf_counter()
        embedded = []
        for window in windows:
            chunks, vectors = indexer_b._embed([c for _, cs in window for c in cs])  # noqa: SLF001
            at, batch = 0, []
            for d, cs in window:
                batch.append((d, chunks[at : at + len(cs)], vectors[at : at + len(cs)]))
                at += len(cs)
            embedded.append(batch)
        stages["encode (chunk + sentence vectors)"] = time.perf_counter() - t
        t = time.perf_counter()
        for batch in embedded:
            store_b.replace_documents(batch)
        stages["store write (replace_documents)"] = time.perf_counter() - t
        total = sum(stages.values())
        n_chunks = sum(len(cs) for b in embedded for _, cs, _ in b)
        result["sequential"] = {
            "total_s": round(total, 2),
            "chunks": n_chunks,
            "stages": {
                k: {"seconds": round(v, 2), "share": round(v / total, 3), "chunks_per_s": round(n_chunks / v, 1)}
                for k, v in stages.items()
            },
        }
        result["rss_mb"] = rss_mb()
        result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


# --- 2. the store writer --------------------------------------------------------------------------------------------
VARIANTS: dict[str, dict[str, Any]] = {
    # The write path as it is: ChromaStore.replace_documents, windows of 256 documents (Indexer.put_many).
    "store": {"mode": "store"},
    "store-1024docs": {"mode": "store", "docs_per_call": 1024},
    # The same write with every text (chunks' and documents') in a metadata key instead of Chroma's documents.
    "store-text-in-metadata": {"mode": "store", "text": "metadata"},
    "store-text-in-metadata-1024docs": {"mode": "store", "text": "metadata", "docs_per_call": 1024},
    # Raw upserts of the same records (text in documents, sentence vectors in metadata), by batch size.
    "b500": {"batch": 500},
    "b2000": {"batch": 2000},
    "bmax": {"batch": "max"},
    # What the records carry.
    "text-in-metadata": {"batch": 2000, "text": "metadata"},
    "no-text": {"batch": 2000, "text": "none"},
    "no-sv": {"batch": 2000, "sv": False},
    "no-text-no-sv": {"batch": 2000, "text": "none", "sv": False},
    # Chroma's collection schema with the full-text index of documents switched off.
    "schema-no-fts": {"batch": 2000, "schema_no_fts": True},
    # The HNSW index persisted every 10,000 / 100,000 additions instead of every 1,000 (Chroma's default).
    "sync10k": {"batch": 2000, "hnsw": {"sync_threshold": 10000}},
    "sync100k": {"batch": 2000, "hnsw": {"sync_threshold": 100000, "batch_size": 1000}},
    # The Chroma server (`chroma run`), 1, 2 and 4 writer processes.
    "server-w1": {"batch": 2000, "server": True, "writers": 1},
    "server-w2": {"batch": 2000, "server": True, "writers": 2},
    "server-w4": {"batch": 2000, "server": True, "writers": 4},
    "server-w2-no-sv": {"batch": 2000, "server": True, "writers": 2, "sv": False},
    "server-w1-text-in-metadata": {"batch": 2000, "server": True, "writers": 1, "text": "metadata"},
    "server-w2-text-in-metadata": {"batch": 2000, "server": True, "writers": 2, "text": "metadata"},
    "server-w2-sync10k": {"batch": 2000, "server": True, "writers": 2, "hnsw": {"sync_threshold": 10000}},
}


def base_chunks() -> dict[str, Any]:
    """Every chunk of the SciFact embedded index (ids, texts, metadatas with sentence vectors, embeddings), cached."""
    if BASE_CACHE.exists():
        with open(BASE_CACHE, "rb") as fh:
            return pickle.load(fh)  # type: ignore[no-any-return]
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from rag.config import DEFAULT_COLLECTION
    from rag.store import chunk_texts

    client = chromadb.PersistentClient(path=str(SCIFACT_INDEX), settings=ChromaSettings(anonymized_telemetry=False))
    got = client.get_collection(f"{DEFAULT_COLLECTION}-chunks").get(include=["documents", "metadatas", "embeddings"])
    docs = client.get_collection(f"{DEFAULT_COLLECTION}-docs").get(include=["documents"])
    base = {
        "doc_texts": dict(zip(docs["ids"], docs["documents"], strict=True)),
        "ids": got["ids"],
        "texts": chunk_texts(got),
        "metadatas": got["metadatas"],
        "embeddings": np.asarray(got["embeddings"], dtype=np.float32),
    }
    with open(BASE_CACHE, "wb") as fh:
        pickle.dump(base, fh)
    return base


def records(n: int, first_copy: int, variant: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """n chunk records, copies ``first_copy``... of the base chunks with jittered vectors, shaped as the variant says."""
    base = base_chunks()
    rng = np.random.default_rng(seed)
    n_base = len(base["ids"])
    out = []
    for k in range(n):
        copy, j = first_copy + k // n_base, k % n_base
        meta = dict(base["metadatas"][j])
        meta["doc_id"] = f"{meta['doc_id']}#{copy}"
        meta["content_hash"] = f"{copy}-{meta['content_hash']}"
        if not variant.get("sv", True):
            meta.pop("sentence_vectors", None)
        text = base["texts"][j]
        if variant.get("text") == "metadata":
            meta["text"] = text
        v = base["embeddings"][j] + rng.normal(0, 0.01, base["embeddings"].shape[1]).astype(np.float32)
        out.append(
            {
                "id": f"{base['ids'][j]}-{copy}",
                "text": text if variant.get("text", "documents") == "documents" else None,
                "meta": meta,
                "vector": v / np.linalg.norm(v),
            }
        )
    return out


def open_collection(variant: dict[str, Any], *, path: str | None, url: str | None, create: bool) -> tuple[Any, int]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        host, port = url.rsplit(":", 1)
        client = chromadb.HttpClient(host=host.split("//")[-1], port=int(port), settings=settings)
    else:
        client = chromadb.PersistentClient(path=path, settings=settings)
    name = "bench-chunks"
    if not create:
        return client.get_collection(name, embedding_function=None), int(client.get_max_batch_size())
    if variant.get("schema_no_fts"):
        from chromadb.api.types import FtsIndexConfig, HnswIndexConfig, Schema, VectorIndexConfig

        schema = Schema().delete_index(FtsIndexConfig(), key="#document")
        schema.create_index(VectorIndexConfig(space="cosine", hnsw=HnswIndexConfig(**variant.get("hnsw", {}))))
        collection = client.create_collection(name, embedding_function=None, schema=schema)
    else:
        hnsw = {"space": "cosine", **variant.get("hnsw", {})}
        collection = client.create_collection(name, embedding_function=None, configuration={"hnsw": hnsw})
    return collection, int(client.get_max_batch_size())


def store_writer(spec: dict[str, Any], recs: list[dict[str, Any]]) -> tuple[Callable[[], None], int, Callable[[], int]]:
    """ChromaStore.replace_documents over the records grouped by document, ``docs_per_call`` documents a call (256:
    Indexer.put_many's window); with ``text: metadata``, a ChromaStore whose write keeps texts in a metadata key."""
    from rag.store import ChromaStore, decode_vectors
    from rag.types import Chunk, Document

    variant = VARIANTS[spec["variant"]]
    doc_texts = base_chunks()["doc_texts"]
    cls = _text_in_metadata_store() if variant.get("text") == "metadata" else ChromaStore
    store = cls(path=Path(spec["path"]), collection="bench")
    by_doc: dict[str, tuple[Document, list[Chunk], list[np.ndarray]]] = {}
    for r in recs:
        m = r["meta"]
        text = r["text"] if r["text"] is not None else m["text"]
        if m["doc_id"] not in by_doc:
            full = doc_texts.get(m["doc_id"].split("#")[0], text)
            doc = Document(doc_id=m["doc_id"], source=m["source"], text=full, content_hash=m["content_hash"])
            by_doc[m["doc_id"]] = (doc, [], [])
        doc, chunks, vecs = by_doc[m["doc_id"]]
        sv = m.get("sentence_vectors")
        chunks.append(
            Chunk(
                chunk_id=r["id"],
                doc_id=doc.doc_id,
                source=doc.source,
                text=text,
                start=int(m["start"]),
                end=int(m["end"]),
                index=int(m["index"]),
                content_hash=doc.content_hash,
                sentence_vectors=decode_vectors(sv).astype(np.float16) if sv else None,
            )
        )
        vecs.append(r["vector"])
    items = [(d, c, np.stack(v)) for d, c, v in by_doc.values()]
    timers = spec["timers"]
    per_call = int(variant.get("docs_per_call", 256))

    def write() -> None:
        from contextlib import ExitStack

        with ExitStack() as stack:
            for obj, name, value in instrument(timers, store, None):
                stack.enter_context(patched(obj, name, value))
            for lo in range(0, len(items), per_call):
                store.replace_documents(items[lo : lo + per_call])

    return write, per_call, store.count_chunks


def _text_in_metadata_store() -> type:
    from rag.store import _KILL_BEFORE_RECORD_OF, _PLACEHOLDER, ChromaStore, _chunk_meta, record_meta
    from rag.store import _translate_errors as translate_errors

    class Store(ChromaStore):
        """ChromaStore._write with each text in the metadata key "text" instead of Chroma's ``documents`` (which
        Chroma indexes for full-text search, a search this project never makes); everything else as it is."""

        def _write(self, items: Any, doc_ids: list[str]) -> None:
            assert _KILL_BEFORE_RECORD_OF is None
            with translate_errors(self._reset):
                old = self._chunks.get(where={"doc_id": {"$in": doc_ids}}, include=[])["ids"]
                chunks = [c for _, cs, _ in items for c in cs]
                metas = [{**_chunk_meta(c, d), "text": c.text} for d, cs, _ in items for c in cs]
                vectors = np.concatenate([v for _, cs, v in items if len(cs)] or [np.zeros((0, 1), np.float32)])
                for lo in range(0, len(chunks), self._max_batch):
                    batch = chunks[lo : lo + self._max_batch]
                    self._chunks.upsert(
                        ids=[c.chunk_id for c in batch],
                        embeddings=vectors[lo : lo + len(batch)],
                        metadatas=metas[lo : lo + len(batch)],
                    )
                self._doc_locks.check(doc_ids)
                for lo in range(0, len(items), self._max_batch):
                    group = items[lo : lo + self._max_batch]
                    self._docs.upsert(
                        ids=[d.doc_id for d, _, _ in group],
                        embeddings=[_PLACEHOLDER for _ in group],
                        metadatas=[{**record_meta(d, len(cs)), "text": d.text} for d, cs, _ in group],
                    )
                stale = sorted(set(old) - {c.chunk_id for c in chunks})
                for lo in range(0, len(stale), self._max_batch):
                    self._chunks.delete(ids=stale[lo : lo + self._max_batch])

    return Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start")


def run_variant(name: str, n: int) -> dict[str, Any]:
    variant = VARIANTS[name]
    work = Path(tempfile.mkdtemp(prefix=f"bench-write-{name}-"))
    server = None
    try:
        spec: dict[str, Any] = {"variant": name}
        if variant.get("server"):
            server, spec["url"] = start_server(work / "chroma")
        else:
            spec["path"] = str(work / "chroma")
        if server is not None:  # an embedded store is created by its one writer (one process per path)
            open_collection(variant, path=None, url=spec["url"], create=True)
        writers = int(variant.get("writers", 1))
        n_base = len(base_chunks()["ids"])
        # Writer w writes copies w, w + writers, ... of the base chunks (its own documents, as parallel uploads do).
        groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for copy in range(-(-n // n_base)):
            groups[copy % writers].append({**spec, "n": min(n_base, n - copy * n_base), "first_copy": copy})
        children = []
        for parts in groups.values():
            child = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_store_write", "_writer", json.dumps(parts)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            children.append(child)
        for child in children:
            assert child.stdout is not None
            json.loads(child.stdout.readline())  # ready
        t = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outs = []
        for child in children:
            assert child.stdout is not None
            outs.append(json.loads(child.stdout.readline()))
            child.wait(timeout=60)
        wall = time.perf_counter() - t
        if server is not None:
            stored = open_collection(variant, path=None, url=spec["url"], create=False)[0].count()
        else:
            stored = outs[0]["count"]
        result = {
            "variant": variant,
            "chunks": n,
            "stored": stored,
            "wall_s": round(wall, 2),
            "chunks_per_s": round(n / wall, 1),
            "batch": outs[0]["batch"],
            "writer_rss_mb": [o.get("VmHWM") for o in outs],
            "writer_rss_before_write_mb": [o["rss_before"].get("VmRSS") for o in outs],
            "disk_mb": du_mb(work),
        }
        if outs[0].get("busy"):
            result["busy"] = outs[0]["busy"]
        if server is not None:
            result["server_rss_mb"] = rss_mb(server.pid)
        return result
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def writer_main(parts_json: str) -> None:
    """A writer process for one or more copies: prepared together, written in one timed run."""
    parts = json.loads(parts_json)
    variant = VARIANTS[parts[0]["variant"]]
    recs = [r for p in parts for r in records(p["n"], p["first_copy"], variant, seed=p["first_copy"])]
    spec = {**parts[0], "n": len(recs), "timers": Timers()}
    count: Callable[[], int]
    if variant.get("mode") == "store":
        write, batch, count = store_writer(spec, recs)
    else:
        collection, max_batch = open_collection(
            variant, path=spec.get("path"), url=spec.get("url"), create=not spec.get("url")
        )
        count = collection.count
        batch = max_batch if variant.get("batch") == "max" else int(variant.get("batch", 2000))
        with_text = variant.get("text", "documents") == "documents"

        def write() -> None:
            for lo in range(0, len(recs), batch):
                part = recs[lo : lo + batch]
                collection.upsert(
                    ids=[r["id"] for r in part],
                    embeddings=np.stack([r["vector"] for r in part]),
                    documents=[r["text"] for r in part] if with_text else None,
                    metadatas=[r["meta"] for r in part],
                )

    before = rss_mb()
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    write()
    seconds = time.perf_counter() - t
    stored = count() if not spec.get("url") else None
    busy = spec["timers"].table(seconds) if spec["timers"].seconds else None
    out = {"seconds": seconds, "batch": batch, "count": stored, "busy": busy, "rss_before": before, **rss_mb()}
    print(json.dumps(out), flush=True)


def run_writer(n: int, names: list[str], rounds: int) -> dict[str, Any]:
    """Each variant ``rounds`` times, interleaved (round 1 of every variant, then round 2, ...), so a change in the
    machine's load (it is shared) falls on every variant alike; the median round is reported, with every round's."""
    base_chunks()
    result: dict[str, Any] = {"machine": machine(), "chunks_per_variant": n, "rounds": rounds, "variants": {}}
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in range(rounds):
        for name in names:
            log(f"round {r + 1}/{rounds} {name}: writing {n} chunks (load {os.getloadavg()[0]:.2f})")
            got = run_variant(name, n)
            got["loadavg_1min_before"] = round(os.getloadavg()[0], 2)
            runs[name].append(got)
            log(f"{name}: {got['chunks_per_s']} chunks/s, {got['wall_s']} s, disk {got['disk_mb']} MB")
    for name in names:
        ordered = sorted(runs[name], key=lambda g: g["chunks_per_s"])
        median = dict(ordered[len(ordered) // 2])
        median["chunks_per_s_rounds"] = [g["chunks_per_s"] for g in runs[name]]
        result["variants"][name] = median
    reference = result["variants"].get("b2000") or result["variants"][names[0]]
    for got in result["variants"].values():
        got["speed_vs_reference"] = round(got["chunks_per_s"] / reference["chunks_per_s"], 2)
    result["reference"] = "b2000" if "b2000" in result["variants"] else names[0]
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def run_read(n: int, n_queries: int) -> dict[str, Any]:
    """What moving the text into a metadata key costs readers: a paged read of the whole collection (the BM25
    snapshot's read) and dense queries of 50 hits (retrieval's), text in ``documents`` against text in metadata."""
    result: dict[str, Any] = {"machine": machine(), "chunks": n, "queries": n_queries, "layouts": {}}
    base = base_chunks()
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(base["ids"]), n_queries)
    queries = base["embeddings"][picks] + rng.normal(0, 0.05, (n_queries, base["embeddings"].shape[1]))
    work = Path(tempfile.mkdtemp(prefix="bench-read-"))
    try:
        for layout in ("documents", "metadata"):
            variant = {"batch": 2000, "text": layout}
            collection, _ = open_collection(variant, path=str(work / layout), url=None, create=True)
            recs = records(n, 0, variant, seed=0)
            for lo in range(0, n, 2000):
                part = recs[lo : lo + 2000]
                collection.upsert(
                    ids=[r["id"] for r in part],
                    embeddings=np.stack([r["vector"] for r in part]),
                    documents=[r["text"] for r in part] if layout == "documents" else None,
                    metadatas=[r["meta"] for r in part],
                )
            del recs
            include = ["documents", "metadatas"] if layout == "documents" else ["metadatas"]
            t = time.perf_counter()
            texts = 0
            for offset in range(0, n, 2000):
                got = collection.get(include=include, limit=2000, offset=offset)
                docs = got["documents"] if layout == "documents" else [m["text"] for m in got["metadatas"]]
                texts += len(docs)
            read_s = time.perf_counter() - t
            assert texts == n
            lat = []
            for q in queries:
                t = time.perf_counter()
                collection.query(query_embeddings=[q.tolist()], n_results=50, include=[*include, "distances"])
                lat.append((time.perf_counter() - t) * 1000)
            result["layouts"][layout] = {
                "paged_read_all_s": round(read_s, 2),
                "query50_ms": {
                    "p50": round(float(np.percentile(lat, 50)), 2),
                    "p95": round(float(np.percentile(lat, 95)), 2),
                },
            }
            log(f"read, text in {layout}: {result['layouts'][layout]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


# --- 3. SQLite FTS5 against BM25Index -------------------------------------------------------------------------------
def run_fts(n: int, n_questions: int) -> dict[str, Any]:
    """FTS5 over the same terms BM25Index uses (rag.text.terms: stemmed, stop words out), so both rank the same
    tokens; FTS5's bm25() has k1=1.2, b=0.75 fixed and its own idf, BM25Index k1=0.9, b=0.4."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from rag.config import DEFAULT_COLLECTION
    from rag.retrieval.bm25 import BM25Index
    from rag.store import chunk_texts
    from rag.text import terms

    client = chromadb.PersistentClient(path=str(SQUAD_INDEX), settings=ChromaSettings(anonymized_telemetry=False))
    got = client.get_collection(f"{DEFAULT_COLLECTION}-chunks").get(include=["documents", "metadatas"])
    base_texts, base_docs = chunk_texts(got), [m["doc_id"] for m in got["metadatas"]]
    n_base = len(base_texts)
    texts = [base_texts[k % n_base] for k in range(n)]
    docs = [f"{base_docs[k % n_base]}#{k // n_base}" for k in range(n)]
    questions = []
    with open(DATASETS / "squad-v1.1-dev" / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            questions.append(json.loads(line)["text"])
            if len(questions) >= n_questions:
                break
    result: dict[str, Any] = {"machine": machine(), "chunks": n, "base_chunks": n_base, "questions": len(questions)}

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}

    t = time.perf_counter()
    bm25 = BM25Index(texts)
    result["bm25index_build_s"] = round(time.perf_counter() - t, 2)
    lat, bm25_top = [], []
    for q in questions:
        t = time.perf_counter()
        top = bm25.top(q, 50)
        lat.append((time.perf_counter() - t) * 1000)
        bm25_top.append({i % n_base for i, _ in top[:10]})
    result["bm25index_query_ms"] = ms(lat)
    result["bm25index_rss_mb"] = rss_mb()
    del bm25

    work = Path(tempfile.mkdtemp(prefix="bench-fts-"))
    try:
        db = sqlite3.connect(work / "lexical.sqlite3")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE VIRTUAL TABLE chunks USING fts5(terms, tokenize='unicode61')")
        # Which rows belong to which document, so an update deletes exactly its rows (FTS5 columns have no index).
        db.execute("CREATE TABLE owner(rowid INTEGER PRIMARY KEY, doc_id TEXT NOT NULL)")
        db.execute("CREATE INDEX owner_doc ON owner(doc_id)")
        t = time.perf_counter()
        tokenised = [" ".join(terms(x)) for x in texts]
        result["fts5_tokenise_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        for lo in range(0, n, 2000):
            with db:
                part = tokenised[lo : lo + 2000]
                rows = list(zip(range(lo + 1, lo + 1 + len(part)), part, docs[lo : lo + 2000], strict=True))
                db.executemany("INSERT INTO chunks(rowid, terms) VALUES (?, ?)", [(r, x) for r, x, _ in rows])
                db.executemany("INSERT INTO owner(rowid, doc_id) VALUES (?, ?)", [(r, d) for r, _, d in rows])
        insert = time.perf_counter() - t
        result["fts5_insert_s"] = round(insert, 2)
        result["fts5_insert_chunks_per_s"] = round(n / insert, 1)
        t = time.perf_counter()
        with db:
            db.execute("INSERT INTO chunks(chunks) VALUES ('optimize')")
        result["fts5_optimize_s"] = round(time.perf_counter() - t, 2)
        result["fts5_disk_mb"] = du_mb(work)

        def search(q: str) -> list[tuple[int, float]]:
            words = sorted(set(terms(q)))
            if not words:
                return []
            return db.execute(
                "SELECT rowid, bm25(chunks) FROM chunks WHERE chunks MATCH ? ORDER BY bm25(chunks) LIMIT 50",
                (" OR ".join(f'"{w}"' for w in words),),
            ).fetchall()

        lat, overlap = [], []
        for q, theirs in zip(questions, bm25_top, strict=True):
            t = time.perf_counter()
            top = search(q)
            lat.append((time.perf_counter() - t) * 1000)
            mine = {(r - 1) % n_base for r, _ in top[:10]}
            overlap.append(len(mine & theirs) / max(1, len(theirs)))
        result["fts5_query_ms"] = ms(lat)
        result["fts5_top10_overlap_with_bm25index"] = round(float(np.mean(overlap)), 3)
        # A one-document update: delete its chunks, insert its new ones, in one transaction.
        victim = docs[n // 2]
        new = [" ".join(terms(x + " updated")) for x, d in zip(texts, docs, strict=True) if d == victim]
        t = time.perf_counter()
        with db:
            gone = [r for (r,) in db.execute("SELECT rowid FROM owner WHERE doc_id = ?", (victim,))]
            db.executemany("DELETE FROM chunks WHERE rowid = ?", [(r,) for r in gone])
            db.executemany("DELETE FROM owner WHERE rowid = ?", [(r,) for r in gone])
            for x in new:
                rowid = db.execute("INSERT INTO chunks(terms) VALUES (?)", (x,)).lastrowid
                db.execute("INSERT INTO owner(rowid, doc_id) VALUES (?, ?)", (rowid, victim))
        result["fts5_update_one_doc_ms"] = round((time.perf_counter() - t) * 1000, 1)
        result["fts5_update_chunks"] = len(new)
        lat = []
        for q in questions:
            t = time.perf_counter()
            search(q)
            lat.append((time.perf_counter() - t) * 1000)
        result["fts5_query_after_update_ms"] = ms(lat)
        result["rss_mb"] = rss_mb()
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--docs", type=int, default=1000)
    w = sub.add_parser("writer")
    w.add_argument("--chunks", type=int, default=20000)
    w.add_argument("--variants", default=",".join(VARIANTS))
    w.add_argument("--rounds", type=int, default=1, help="interleaved repetitions; the median is reported")
    w.add_argument("--section", default="writer", help="key of the results JSON to write")
    r = sub.add_parser("read")
    r.add_argument("--chunks", type=int, default=20000)
    r.add_argument("--queries", type=int, default=50)
    f = sub.add_parser("fts")
    f.add_argument("--chunks", type=int, default=100_000)
    f.add_argument("--questions", type=int, default=50)
    x = sub.add_parser("_writer")
    x.add_argument("parts")
    args = parser.parse_args()
    if args.cmd == "_writer":
        writer_main(args.parts)
    elif args.cmd == "pipeline":
        save("pipeline", run_pipeline(args.docs))
    elif args.cmd == "writer":
        names = [v for v in args.variants.split(",") if v]
        unknown = [v for v in names if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
        save(args.section, run_writer(args.chunks, names, args.rounds))
    elif args.cmd == "read":
        save("read", run_read(args.chunks, args.queries))
    else:
        save("fts", run_fts(args.chunks, args.questions))


if __name__ == "__main__":
    main()
