"""The BM25 side alone against collection size: what a write and a question cost it, and its memory.

    python benchmarks/bench_lexical.py [--store /tmp/rag-eval/squad] [--sizes 10000 100000 1000000]

Collections are copies of the SQuAD index's 2,540 chunks (their term counts, new ids, a new document per copy of a
paragraph), so 10^6 chunks need no hour of tokenising. A copied corpus is the hard case for postings: each term occurs
~400 times as often at 10^6 as in real text of that size, so the question figures are upper bounds. For each size:
the time to build the index from term counts, a question's BM25 top-50 (p50/p95 over 100 SQuAD questions), one
document written (the delta a replica applies), a merge of all segments, the cache's save and load, the bytes per
chunk of its arrays, and (up to 10^5) the old cost of every write: a BM25 index rebuilt from the chunk texts. Writes
benchmarks/results/lexical.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.retrieval.bm25 import BM25Index  # noqa: E402
from rag.retrieval.lexical import LexicalIndex, _positions, _Segment, load_index, save_index  # noqa: E402
from rag.store import ChromaStore, IndexedDocument  # noqa: E402

SQUAD = ROOT.parent / "shared" / "datasets" / "squad-v1.1-dev"


def replicated(base: _Segment, vocab: dict[str, int], copies: int) -> LexicalIndex:
    ptr, terms, tfs = [np.zeros(1, np.int64)], [], []
    offset = 0
    for _ in range(copies):
        ptr.append(base.chunk_ptr[1:] + offset)
        offset += base.chunk_terms.size
        terms.append(base.chunk_terms)
        tfs.append(base.chunk_tf)
    ids = [f"{i}-{c}" for c in range(copies) for i in base.ids]
    docs = [f"{d}#{c}" for c in range(copies) for d in base.doc_ids]
    seg = _Segment.from_arrays(
        ids,
        docs,
        np.tile(base.lengths, copies),
        np.concatenate(ptr),
        np.concatenate(terms),
        np.concatenate(tfs),
        len(vocab),
    )
    df = np.bincount(seg.chunk_terms, minlength=len(vocab)).astype(np.int64)
    return LexicalIndex(
        generation=1,
        segments=(seg,),
        alive=(np.ones(seg.size, dtype=bool),),
        vocab=vocab,
        df=df,
        size=seg.size,
        total_length=float(seg.lengths.sum()),
        doc_positions=_positions([seg]),
        doc_hashes=dict.fromkeys(set(docs), "h"),
        doc_pages={},
    )


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/rag-eval/squad"), help="an embedded index's data dir")
    parser.add_argument("--collection", default="default")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lexical.json")
    args = parser.parse_args(argv)

    ids: list[str] = []
    doc_ids: list[str] = []
    texts: list[str] = []
    store = ChromaStore(path=args.store / "chroma", collection=args.collection)
    for page_ids, page_texts, metas in store.scan_chunks():
        ids += page_ids
        texts += page_texts
        doc_ids += [str(m["doc_id"]) for m in metas]
    if not ids:
        sys.exit(f"no chunks in {args.store}: build it with benchmarks/build_index.py")
    vocab: dict[str, int] = {}
    base = _Segment.from_texts(ids, doc_ids, texts, vocab)
    questions = [json.loads(line)["text"] for line in (SQUAD / "queries.jsonl").open()]
    random.Random(0).shuffle(questions)
    questions = questions[:100]
    rows = []
    for size in args.sizes:
        copies = max(1, round(size / len(texts)))
        t0 = time.perf_counter()
        index = replicated(base, vocab, copies)
        build_s = time.perf_counter() - t0
        seg = index.segments[0]
        arrays = sum(
            a.nbytes
            for a in (seg.lengths, seg.chunk_ptr, seg.chunk_terms, seg.chunk_tf, seg.terms, seg.term_ptr)
            + (seg.post_cols, seg.post_tf)
        )
        latencies = []
        for q in questions:
            t = time.perf_counter()
            index.top(q, 50)
            latencies.append((time.perf_counter() - t) * 1000)
        doc_id = seg.doc_ids[0]
        written = IndexedDocument(doc_id, "h2", "", (), [(f"new{i}", texts[i], 0) for i in range(3)])
        t = time.perf_counter()
        after = index.apply({doc_id: written}, titles=False)
        apply_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        after.merged()
        merge_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cache.npz"
            t = time.perf_counter()
            save_index(after, path, epoch="e", pointer=0, applied={})
            save_s = time.perf_counter() - t
            t = time.perf_counter()
            load_index(path)
            load_s = time.perf_counter() - t
            file_mb = path.stat().st_size / 1e6
        rebuild_s = None
        if index.size <= 200_000:  # the old per-write cost: every chunk's text tokenised again
            t = time.perf_counter()
            BM25Index([texts[i % len(texts)] for i in range(index.size)])
            rebuild_s = round(time.perf_counter() - t, 2)
        row = {
            "chunks": index.size,
            "build_from_counts_s": round(build_s, 2),
            "array_bytes_per_chunk": round(arrays / index.size),
            "top50_p50_ms": pct(latencies, 50),
            "top50_p95_ms": pct(latencies, 95),
            "apply_one_document_ms": round(apply_ms, 1),
            "merge_s": round(merge_s, 2),
            "cache_save_s": round(save_s, 2),
            "cache_load_s": round(load_s, 2),
            "cache_mb": round(file_mb, 1),
            "old_rebuild_from_texts_s": rebuild_s,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        del index, after
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "base_chunks": len(texts)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
