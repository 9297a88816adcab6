"""GPU figures (run by benchmarks/gpu_bench.sh on a CUDA host): whole SciFact ingestion docs/s on CUDA fp16
(chunking, embedding and Chroma writes included) and raw fp16 encoding texts/s. Writes JSON to --out."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ingest import as_text, load_scifact  # noqa: E402
from index.chunking import chunk_document  # noqa: E402
from index.pipeline import Indexer  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embedding import model_path  # noqa: E402
from rag.factory import build_embedder, open_store  # noqa: E402
from rag.types import Document  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    result: dict[str, object] = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
    }
    if not torch.cuda.is_available():
        result["error"] = "torch.cuda.is_available() is False (CPU-only torch build, or no driver)"
        (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 3
    result["gpu"] = torch.cuda.get_device_name(0)
    raw, _, _ = load_scifact(args.data, 0)
    docs = [Document(doc_id=d["_id"], source="", text=as_text(d), content_hash="") for d in raw]
    texts = [c.text for d in docs for c in chunk_document(d, chunk_tokens=200, overlap=32)]
    embedder = build_embedder(Settings(device="cuda"))
    result["precision"] = embedder.precision
    embedder.embed(texts[:2048])  # warm: CUDA context, kernels, tokenizer
    runs = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        embedder.embed(texts)
        torch.cuda.synchronize()
        runs.append(len(texts) / (time.perf_counter() - t))
    result["ours_encode_texts_per_s"] = statistics.median(runs)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_path()), device="cuda")
    st.max_seq_length = 256
    st.half()
    st.encode(texts[:2048], batch_size=1024)
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        st.encode(texts, batch_size=1024, normalize_embeddings=True)
        runs.append(len(texts) / (time.perf_counter() - t))
    result["raw_st_fp16_texts_per_s"] = statistics.median(runs)

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            settings = Settings(data_dir=Path(tmp) / f"run{r}")
            indexer = Indexer(store=open_store(settings), embedder=embedder, chunk_tokens=200, chunk_overlap=32)
            t = time.perf_counter()
            fresh = [Document.from_text(doc_id=d["_id"], source=f"scifact/{d['_id']}", text=as_text(d)) for d in raw]
            chunks = indexer.put_many(fresh)
            seconds = time.perf_counter() - t
            runs.append({"seconds": seconds, "docs_per_s": len(raw) / seconds, "chunks_per_s": chunks / seconds})
            print(f"ingest run {r}: {runs[-1]}", flush=True)
    result["ingest_runs"] = runs
    result["ingest_docs_per_s"] = statistics.median(x["docs_per_s"] for x in runs)
    result["ingest_chunks_per_s"] = statistics.median(x["chunks_per_s"] for x in runs)
    result["docs"] = len(raw)
    result["chunks"] = len(texts)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
