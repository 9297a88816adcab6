"""SciFact retrieval figures (document level: hit@1/5/10, MRR@10, nDCG@10, recall@100) for several fusion settings.

Retrieval only, through ``HybridRetriever.retrieve`` over a store of the whole corpus; each question is embedded
once and every setting ranks from that vector, so the settings are compared on equal terms, side by side, with
their p50 retrieval time. ``rag eval`` (make eval-scifact) gives the same retrieval metrics plus the answer ones.

    python benchmarks/eval_scifact.py [--split test] [--vectors DIR] [--setting convex:0.8:1.0 --setting rrf:1:1]

``--vectors DIR`` builds the store from precomputed corpus vectors (benchmarks/stored_vectors.py) instead of
embedding 12,101 chunks on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from index.corpus import index_corpus  # noqa: E402
from index.pipeline import build_indexer  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluation.metrics import distinct_docs, hit_at, mrr_at, ndcg_at, recall_at  # noqa: E402
from rag.evaluation.references import load_beir  # noqa: E402
from rag.factory import build_embedder, open_store  # noqa: E402
from rag.retrieval.hybrid import HybridRetriever  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def parse_setting(text: str) -> dict[str, object]:
    """fusion:dense_weight:bm25_weight[:candidates[:titles]], e.g. convex:0.8:1.0 or rrf:1:1:50:0 (titles 0/1)."""
    parts = text.split(":")
    setting: dict[str, object] = {"fusion": parts[0], "dense_weight": float(parts[1]), "bm25_weight": float(parts[2])}
    if len(parts) > 3:
        setting["candidates"] = int(parts[3])
    if len(parts) > 4:
        setting["bm25_titles"] = parts[4] == "1"
    return setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/rag-eval/scifact"))
    parser.add_argument("--vectors", type=Path, help="folder of precomputed corpus vectors (see stored_vectors.py)")
    parser.add_argument("--setting", action="append", help="fusion:dense_weight:bm25_weight[:candidates[:titles]]")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write per-setting aggregates here (JSON)")
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir)
    model = build_embedder(settings)
    embedder = model
    if args.vectors:
        from benchmarks.stored_vectors import StoredVectorEmbedder

        embedder = StoredVectorEmbedder(model, args.vectors)
    store = open_store(settings)
    indexer = build_indexer(settings, store=store, embedder=embedder)
    report = index_corpus(indexer, args.data, show_progress=sys.stderr.isatty())
    print(f"index: {report.summary()}", file=sys.stderr)
    if args.vectors:
        print(f"stored vectors used for {embedder.found} chunks, model for {embedder.missed}", file=sys.stderr)

    items = load_beir(args.data, split=args.split, limit=args.limit or None)
    queries = np.stack([model.embed_query(i.question) for i in items])
    settings_list = [parse_setting(s) for s in (args.setting or ["convex:0.8:1.0", "rrf:1:1"])]
    retrievers = [HybridRetriever(store=store, embedder=model, **s) for s in settings_list]  # type: ignore[arg-type]
    built: dict[bool, HybridRetriever] = {}
    for r in retrievers:  # one BM25 build per title handling
        if r.bm25_titles in built:
            r.side = built[r.bm25_titles].side
        built[r.bm25_titles] = r
        r.lexical()
    metrics: list[dict[str, list[float]]] = [{} for _ in retrievers]
    times: list[list[float]] = [[] for _ in retrievers]
    for qi, item in enumerate(items):
        gold = set(item.gold_doc_ids)
        relevance = item.relevance or dict.fromkeys(gold, 1)
        for si, retriever in enumerate(retrievers):  # interleaved, so load on the machine hits all alike
            started = time.perf_counter()
            passages = retriever.retrieve(item.question, top_k=100, query_embedding=queries[qi])
            times[si].append((time.perf_counter() - started) * 1000)
            ranked = distinct_docs([p.doc_id for p in passages])
            row = {f"hit@{k}": hit_at(ranked, gold, k) for k in (1, 5, 10)}
            row.update(
                {
                    "mrr@10": mrr_at(ranked, gold),
                    "ndcg@10": ndcg_at(ranked, relevance),
                    "recall@100": recall_at(ranked, gold, 100),
                }
            )
            for name, value in row.items():
                metrics[si].setdefault(name, []).append(value)
    summary = []
    for setting, rows, ms in zip(settings_list, metrics, times, strict=True):
        agg = {name: round(statistics.fmean(v), 4) for name, v in rows.items()}
        agg["retrieve_p50_ms"] = round(statistics.median(ms), 2)
        summary.append({"setting": setting, "split": args.split, "questions": len(items), **agg})
        print(json.dumps(summary[-1]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
