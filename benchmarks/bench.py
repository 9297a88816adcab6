"""Speed benchmark, side by side on one machine in one run (`make bench`; `--mode full` for the whole of SciFact).

(a) this project: Indexer.put_many into Chroma, then /ask in-process and over HTTP;
(b) the plain llama-index pipeline a user would write: VectorStoreIndex over ChromaVectorStore, the same MiniLM
    model (sentence-transformers fp32 behind a small BaseEmbedding), the same splitter settings;
(c) raw sentence-transformers fp32 encoding of the same chunk texts (the fp32 model's limit).

Prints a summary and writes benchmarks/results/bench-<mode>.json and query_scaling-<mode>.png.
The larger corpora for the scaling curve are built from the embedded SciFact chunks: copies of every chunk (text,
offsets and metadata kept, a new document id per copy) whose vectors get a small Gaussian jitter (sigma 0.01 per
dimension, renormalised) so that the HNSW graph holds distinct points.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.chunking import chunk_document  # noqa: E402
from index.pipeline import Indexer  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embedding import SentenceTransformerEmbedder, model_path  # noqa: E402
from rag.factory import build_embedder, build_service, open_store  # noqa: E402
from rag.types import Chunk, Document  # noqa: E402

MODES = {
    # docs, ingestion repeats, /ask questions, concurrent seconds, scaling sizes
    "quick": {"docs": 120, "repeats": 2, "questions": 20, "seconds": 8, "sizes": [1000, 5000]},
    "full": {"docs": 0, "repeats": 3, "questions": 300, "seconds": 30, "sizes": [1000, 5000, 20000, 50000, 100000]},
}
CHUNK_TOKENS, OVERLAP = 200, 32


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_scifact(data: Path, n: int) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, set[str]]]:
    docs = []
    with open(data / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            docs.append(json.loads(line))
            if n and len(docs) >= n:
                break
    qrels: dict[str, set[str]] = {}
    with open(data / "scifact" / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, cid, _ = line.strip().split("\t")
            qrels.setdefault(qid, set()).add(cid)
    queries = [json.loads(line) for line in open(data / "scifact" / "queries.jsonl", encoding="utf-8")]
    queries = [q for q in queries if q["_id"] in qrels]
    return docs, queries, qrels


def as_text(doc: dict[str, str]) -> str:
    return f"{doc['title']}\n\n{doc['text']}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- (a) this project ---------------------------------------------------------------------------------------------
def ingest_ours(raw: list[dict[str, str]], embedder: SentenceTransformerEmbedder, data_dir: Path) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir)
    indexer = Indexer(store=open_store(settings), embedder=embedder, chunk_tokens=CHUNK_TOKENS, chunk_overlap=OVERLAP)
    t0 = time.perf_counter()
    docs = [Document.from_text(doc_id=d["_id"], source=f"scifact/{d['_id']}", text=as_text(d)) for d in raw]
    chunks = indexer.put_many(docs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "docs": len(docs), "chunks": chunks}


# --- (b) plain llama-index ----------------------------------------------------------------------------------------
def ingest_llama(raw: list[dict[str, str]], st_model: Any, data_dir: Path) -> dict[str, Any]:
    import chromadb
    from llama_index.core import Document as LIDocument
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.embedding import load_tokenizer

    class STEmbedding(BaseEmbedding):  # the same local model; what llama-index's HuggingFaceEmbedding does
        def _get_query_embedding(self, query: str) -> list[float]:
            return st_model.encode([query], normalize_embeddings=True)[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_query_embedding(text)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return st_model.encode(texts, normalize_embeddings=True).tolist()  # type: ignore[no-any-return]

    tok = load_tokenizer()
    splitter = SentenceSplitter(
        chunk_size=CHUNK_TOKENS,
        chunk_overlap=OVERLAP,
        tokenizer=lambda t: tok.encode(t, add_special_tokens=False).ids,
    )
    t0 = time.perf_counter()
    client = chromadb.PersistentClient(path=str(data_dir))
    collection = client.get_or_create_collection("llama", configuration={"hnsw": {"space": "cosine"}})
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    docs = [LIDocument(text=as_text(d), id_=d["_id"]) for d in raw]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=storage, embed_model=STEmbedding(), transformations=[splitter]
    )
    seconds = time.perf_counter() - t0
    chunks = collection.count()
    # Dense retrieval latency of the plain pipeline, for reference.
    retriever = index.as_retriever(similarity_top_k=5)
    lat = []
    for d in raw[:20]:
        t = time.perf_counter()
        retriever.retrieve(d["title"])
        lat.append((time.perf_counter() - t) * 1000)
    return {"seconds": seconds, "docs": len(docs), "chunks": chunks, "retrieve_p50_ms": pct(lat, 50)}


# --- /ask -------------------------------------------------------------------------------------------------------
def ask_in_process(data_dir: Path, questions: list[str]) -> dict[str, Any]:
    service = build_service(Settings(data_dir=data_dir))
    service.embedder.load()
    service.ask(questions[0])  # warm: BM25 built, first-call costs paid
    lat, parts = [], {"embed": [], "retrieve": [], "answer": []}
    for q in questions:
        t = time.perf_counter()
        a = service.ask(q)
        lat.append((time.perf_counter() - t) * 1000)
        for k in parts:
            parts[k].append(a.timings_ms.get(k, 0.0))
    return {
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "n": len(lat),
        "parts_p50_ms": {k: pct(v, 50) for k, v in parts.items()},
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT)
    return env


def cold_ask(data_dir: Path, question: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "api.cli", "ask", question],
        cwd=ROOT,
        env=env_for(data_dir),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return time.perf_counter() - t


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_bench(data_dir: Path, questions: list[str], seconds: float) -> dict[str, Any]:
    import httpx

    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env_for(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        with httpx.Client(timeout=5) as c:
            while time.perf_counter() - t0 < 120:
                try:
                    if c.get(f"{base}/ready").status_code == 200:
                        ready = time.perf_counter() - t0
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        if ready is None:
            raise RuntimeError("server not ready within 120 s")
        lat = []
        with httpx.Client(timeout=30) as c:
            c.post(f"{base}/ask", json={"question": questions[0]}).raise_for_status()
            for q in questions:
                t = time.perf_counter()
                r = c.post(f"{base}/ask", json={"question": q})
                lat.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
        ok, errors, conc_lat = 0, 0, []
        lock = threading.Lock()
        deadline = time.perf_counter() + seconds

        def client(k: int) -> None:
            nonlocal ok, errors
            with httpx.Client(timeout=30) as c:
                i = k
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    try:
                        good = c.post(f"{base}/ask", json={"question": questions[i % len(questions)]}).is_success
                    except httpx.HTTPError:
                        good = False
                    with lock:
                        conc_lat.append((time.perf_counter() - t) * 1000)
                        ok, errors = ok + good, errors + (not good)
                    i += 8

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        return {
            "serve_ready_s": ready,
            "p50_ms": pct(lat, 50),
            "p95_ms": pct(lat, 95),
            "n": len(lat),
            "concurrency8": {
                "requests_per_s": ok / elapsed,
                "errors": errors,
                "requests": ok + errors,
                "p50_ms": pct(conc_lat, 50),
                "p95_ms": pct(conc_lat, 95),
            },
            "server_peak_rss_mb": rss_peak_mb(proc.pid),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- quality ----------------------------------------------------------------------------------------------------
def dense_ndcg10(
    vectors: np.ndarray, chunk_docs: list[str], qvecs: np.ndarray, qids: list[str], qrels: dict[str, set[str]]
) -> float:
    scores = qvecs @ vectors.T
    total = 0.0
    for row, qid in zip(scores, qids, strict=True):
        ranked: list[str] = []
        for i in np.argsort(-row):
            if chunk_docs[i] not in ranked:
                ranked.append(chunk_docs[i])
            if len(ranked) == 10:
                break
        rel = qrels[qid]
        dcg = sum(1 / np.log2(r + 2) for r, d in enumerate(ranked) if d in rel)
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(rel), 10)))
        total += dcg / idcg
    return total / len(qids)


# --- scaling ----------------------------------------------------------------------------------------------------
def scaling(base_dir: Path, work: Path, sizes: list[int], questions: list[str]) -> list[dict[str, Any]]:
    src = open_store(Settings(data_dir=base_dir))
    got = src._chunks.get(include=["documents", "metadatas", "embeddings"])  # noqa: SLF001
    texts: dict[str, str] = {}
    for info in src.list_documents():
        full = src.get_document(info.doc_id)
        assert full is not None
        texts[info.doc_id] = full.text
    dest = open_store(Settings(data_dir=work))
    rng = np.random.default_rng(0)
    n_base = len(got["ids"])
    results = []
    count, copy = 0, 0
    for size in sizes:
        while count < size:
            items: dict[str, tuple[Document, list[Chunk], list[np.ndarray]]] = {}
            take = min(n_base, size - count)
            for j in range(take):
                meta = got["metadatas"][j]
                doc_id = f"{meta['doc_id']}#{copy}"
                if doc_id not in items:
                    text = texts[str(meta["doc_id"])]
                    doc = Document(
                        doc_id=doc_id,
                        source=f"copy{copy}/{meta['doc_id']}",
                        text=text,
                        content_hash=f"{copy}-{meta['content_hash']}",
                    )
                    items[doc_id] = (doc, [], [])
                doc, chunks, vecs = items[doc_id]
                chunks.append(
                    Chunk(
                        chunk_id=f"{got['ids'][j]}-{copy}",
                        doc_id=doc_id,
                        source=doc.source,
                        text=got["documents"][j],
                        start=int(meta["start"]),
                        end=int(meta["end"]),
                        index=int(meta["index"]),
                        content_hash=doc.content_hash,
                    )
                )
                v = np.asarray(got["embeddings"][j], dtype=np.float32) + rng.normal(0, 0.01, 384).astype(np.float32)
                vecs.append(v / np.linalg.norm(v))
            dest.replace_documents([(d, c, np.stack(v)) for d, c, v in items.values()])
            count += take
            copy += 1
        log(f"scaling: {count} chunks stored; measuring")
        service = build_service(Settings(data_dir=work))
        service.embedder.load()
        service.ask(questions[0])
        lat, dense = [], []
        for q in questions:
            t = time.perf_counter()
            service.ask(q)
            lat.append((time.perf_counter() - t) * 1000)
            qv = service.embedder.embed_query(q)
            t = time.perf_counter()
            service.store.query(qv, n=50)
            dense.append((time.perf_counter() - t) * 1000)
        results.append(
            {
                "chunks": count,
                "ask_p50_ms": pct(lat, 50),
                "ask_p95_ms": pct(lat, 95),
                "dense_query_p50_ms": pct(dense, 50),
            }
        )
    return results


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["chunks"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [p["ask_p50_ms"] for p in points], "o-", label="/ask in-process p50")
    ax.plot(xs, [p["ask_p95_ms"] for p in points], "o--", label="/ask in-process p95")
    ax.plot(xs, [p["dense_query_p50_ms"] for p in points], "s-", label="Chroma dense query p50")
    ax.set_xscale("log")
    ax.set_xlabel("chunks in the index")
    ax.set_ylabel("ms")
    ax.set_title("Query latency against index size")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- main -------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default=os.environ.get("BENCH_MODE", "quick"))
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--docs", type=int, default=None, help="SciFact documents to ingest (0: all)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--sizes", default=None, help="comma list of index sizes (chunks) for the scaling curve")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: llama,raw,http,scaling,quality")
    args = parser.parse_args(argv)
    cfg = dict(MODES[args.mode])
    if args.docs is not None:
        cfg["docs"] = args.docs
    if args.repeats is not None:
        cfg["repeats"] = args.repeats
    if args.sizes:
        cfg["sizes"] = [int(x) for x in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)

    raw, queries, qrels = load_scifact(args.data, cfg["docs"])
    questions = [q["text"] for q in queries][: cfg["questions"]]
    embedder = build_embedder(Settings())
    log(
        f"mode={args.mode} docs={len(raw)} repeats={cfg['repeats']} device={embedder.device} "
        f"precision={embedder.precision} cores={os.cpu_count()}"
    )
    result: dict[str, Any] = {
        "mode": args.mode,
        "docs": len(raw),
        "repeats": cfg["repeats"],
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
        },
        "embedding": {"device": embedder.device, "precision": embedder.precision},
    }
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(str(model_path()), device="cpu")
    st_model.max_seq_length = 256
    # Warm both models and the tokenizers outside the timed runs.
    embedder.embed([as_text(d) for d in raw[:80]])
    st_model.encode([as_text(d) for d in raw[:8]])

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmpdir = Path(tmp)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "llama": [], "raw": []}
        doc_objs = [Document(doc_id=d["_id"], source="", text=as_text(d), content_hash="") for d in raw]
        chunk_texts = [c.text for d in doc_objs for c in chunk_document(d, chunk_tokens=CHUNK_TOKENS, overlap=OVERLAP)]
        # Interleaved repeats, so that load on a shared machine hits every pipeline alike.
        for r in range(cfg["repeats"]):
            data_dir = tmpdir / f"ours{r}"
            runs["ours"].append(ingest_ours(raw, embedder, data_dir))
            log(f"(a) ours run {r}: {runs['ours'][-1]}")
            if "llama" not in skip:
                runs["llama"].append(ingest_llama(raw, st_model, tmpdir / f"llama{r}"))
                log(f"(b) llama-index run {r}: {runs['llama'][-1]}")
            if "raw" not in skip:
                t = time.perf_counter()
                st_model.encode(chunk_texts, batch_size=32, normalize_embeddings=True)
                runs["raw"].append({"seconds": time.perf_counter() - t, "docs": len(raw), "chunks": len(chunk_texts)})
                log(f"(c) raw sentence-transformers run {r}: {runs['raw'][-1]}")
        ingest: dict[str, Any] = {}
        for name, rs in runs.items():
            if rs:
                ingest[name] = {
                    "docs_per_s": statistics.median(x["docs"] / x["seconds"] for x in rs),
                    "chunks_per_s": statistics.median(x["chunks"] / x["seconds"] for x in rs),
                    "seconds_median": statistics.median(x["seconds"] for x in rs),
                    "chunks": rs[0]["chunks"],
                    "runs": rs,
                }
        for other in ("llama", "raw"):
            if other in ingest:
                ingest[f"ratio_ours_over_{other}"] = ingest["ours"]["docs_per_s"] / ingest[other]["docs_per_s"]
        result["ingest"] = ingest
        index_dir = tmpdir / "ours0"

        if "quality" not in skip:
            ours_vecs = embedder.embed(chunk_texts)
            fp32 = st_model.encode(chunk_texts, batch_size=32, normalize_embeddings=True)
            cos = (ours_vecs * fp32).sum(axis=1)
            chunk_docs = [
                d.doc_id for d in doc_objs for _ in chunk_document(d, chunk_tokens=CHUNK_TOKENS, overlap=OVERLAP)
            ]
            present = {d["_id"] for d in raw}
            qs = [q for q in queries if qrels[q["_id"]] & present]
            q_ours = np.stack([embedder.embed_query(q["text"]) for q in qs])
            q_fp32 = st_model.encode([q["text"] for q in qs], normalize_embeddings=True)
            sub = {q["_id"]: qrels[q["_id"]] & present for q in qs}
            result["quality"] = {
                "cosine_to_fp32_min": float(cos.min()),
                "cosine_to_fp32_mean": float(cos.mean()),
                "queries": len(qs),
                "dense_ndcg10_ours": dense_ndcg10(ours_vecs, chunk_docs, q_ours, [q["_id"] for q in qs], sub),
                "dense_ndcg10_fp32": dense_ndcg10(fp32, chunk_docs, q_fp32, [q["_id"] for q in qs], sub),
            }
            log(f"quality: {result['quality']}")

        # In a fresh process (no torch, no benchmark state): what a library user or the server sees.
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.bench import ask_in_process; "
            "print(json.dumps(ask_in_process(__import__('pathlib').Path(sys.argv[2]), json.loads(sys.argv[3]))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(ROOT), str(index_dir), json.dumps(questions)],
            cwd=ROOT,
            env=env_for(index_dir),
            check=True,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        result["ask_in_process"] = json.loads(out.stdout.strip().splitlines()[-1])
        log(f"/ask in-process: {result['ask_in_process']}")
        result["cold_rag_ask_s"] = statistics.median(cold_ask(index_dir, questions[1]) for _ in range(2))
        log(f"cold rag ask: {result['cold_rag_ask_s']:.2f} s")
        if "http" not in skip:
            result["http"] = http_bench(index_dir, questions, cfg["seconds"])
            log(f"HTTP: {result['http']}")
        if "scaling" not in skip:
            points = scaling(index_dir, tmpdir / "scaling", cfg["sizes"], questions[:15])
            base = next((p for p in points if p["chunks"] >= 5000), points[0])
            result["scaling"] = {
                "points": points,
                "built_from": "copies of the embedded SciFact chunks with jittered vectors (see module docstring)",
                "ratio_largest_over_5k_p50": points[-1]["ask_p50_ms"] / base["ask_p50_ms"],
            }
            plot(points, args.out / f"query_scaling-{args.mode}.png")
            log(f"scaling: {points}")
    result["machine"]["loadavg_end"] = os.getloadavg()
    path = args.out / f"bench-{args.mode}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    summary(result)
    log(f"saved {path}")
    return 0


def summary(r: dict[str, Any]) -> None:
    ing = r["ingest"]
    print(f"\n== ingestion (SciFact, {r['docs']} docs, median of {r['repeats']}) ==")
    for name, label in (("ours", "(a) this project"), ("llama", "(b) llama-index"), ("raw", "(c) raw ST fp32")):
        if name in ing:
            print(f"{label:22s} {ing[name]['docs_per_s']:8.1f} docs/s {ing[name]['chunks_per_s']:8.1f} chunks/s")
    for k in ("ratio_ours_over_llama", "ratio_ours_over_raw"):
        if k in ing:
            print(f"{k:22s} {ing[k]:.2f}x")
    if "quality" in r:
        q = r["quality"]
        print(
            f"quality: cosine to fp32 min {q['cosine_to_fp32_min']:.5f}; dense nDCG@10 ours "
            f"{q['dense_ndcg10_ours']:.4f} vs fp32 {q['dense_ndcg10_fp32']:.4f} ({q['queries']} queries)"
        )
    a = r["ask_in_process"]
    print(f"/ask in-process p50 {a['p50_ms']:.1f} ms p95 {a['p95_ms']:.1f} ms  parts p50 {a['parts_p50_ms']}")
    print(f"cold `rag ask` {r['cold_rag_ask_s']:.2f} s")
    if "http" in r:
        h = r["http"]
        c = h["concurrency8"]
        print(
            f"/ask HTTP p50 {h['p50_ms']:.1f} ms p95 {h['p95_ms']:.1f} ms; 8 clients {c['requests_per_s']:.1f} req/s "
            f"errors {c['errors']}; `rag serve` ready {h['serve_ready_s']:.2f} s; peak RSS "
            f"{h['server_peak_rss_mb']:.0f} MB"
        )
    if "scaling" in r:
        for p in r["scaling"]["points"]:
            print(
                f"  {p['chunks']:>7} chunks: /ask p50 {p['ask_p50_ms']:.1f} ms, dense {p['dense_query_p50_ms']:.1f} ms"
            )


if __name__ == "__main__":
    sys.exit(main())
