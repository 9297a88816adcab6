"""Speed benchmark, side by side on one machine in one run (`make bench`; `--mode full` for the whole of SciFact;
`--mode scale` for the growth benchmark, benchmarks/bench_scale.py, whose options follow it).

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
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ingest import (  # noqa: E402
    CHUNK_TOKENS,
    OVERLAP,
    as_text,
    dense_ndcg10,
    ingest_llama,
    ingest_ours,
    load_scifact,
    log,
)
from benchmarks.bench_query import cold_ask, env_for, http_bench, plot, scaling  # noqa: E402
from index.chunking import chunk_document  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embedding import model_path  # noqa: E402
from rag.factory import build_embedder  # noqa: E402
from rag.types import Document  # noqa: E402

MODES = {
    # docs, ingestion repeats, /ask questions, concurrent seconds, scaling sizes
    "quick": {"docs": 120, "repeats": 2, "questions": 20, "seconds": 8, "sizes": [1000, 5000]},
    "full": {"docs": 0, "repeats": 3, "questions": 300, "seconds": 30, "sizes": [1000, 5000, 20000, 50000, 100000]},
}


# --- main -------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    # `--mode scale` is the growth benchmark (benchmarks/bench_scale.py), with options of its own.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--mode", default=os.environ.get("BENCH_MODE", "quick"))
    known, rest = pre.parse_known_args(argv)
    if known.mode == "scale":
        from benchmarks.bench_scale import main as scale_main

        return scale_main(rest)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=[*sorted(MODES), "scale"], default=os.environ.get("BENCH_MODE", "quick"))
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
            "import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.bench_query import ask_in_process; "
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
