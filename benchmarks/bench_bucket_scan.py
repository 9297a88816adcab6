"""Full reads of a collection by offset against by bucket range (README "Growth"), side by side on one store.

    PYTHONPATH=. python benchmarks/bench_bucket_scan.py /tmp/scale-bucket/n10000 /tmp/scale-bucket/n100000

Each DIR is a RAG_DATA_DIR whose collection this version created (bucketed), e.g. one built by
`BENCH_SCALE_RAW=1 python benchmarks/bench_scale.py --sizes 10000,100000 --work DIR --build-only`. For each, in
alternating rounds: ``scan_chunks`` and ``list_documents`` read by offset (the store told its collections carry no
bucket flag, as a store written before buckets is read), by ``$in`` bucket ranges (what the store does), and, for
the chunks, by ``$gte``/``$lt`` bucket ranges. Medians and ratios go to stdout and --json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rag.store  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.factory import open_store  # noqa: E402


def scan(store: Any, how: str) -> tuple[float, int]:
    t = time.perf_counter()
    if how == "range":  # the alternative where clause, read the same way
        coll = store._chunks  # noqa: SLF001
        total = coll.count()
        step = max(1, math.ceil(rag.store.BUCKETS * rag.store._PAGE / total))  # noqa: SLF001
        n = 0
        for lo in range(0, rag.store.BUCKETS, step):
            where = {"$and": [{"bucket": {"$gte": lo}}, {"bucket": {"$lt": lo + step}}]}
            n += len(coll.get(where=where, include=["documents", "metadatas"])["ids"])
        return time.perf_counter() - t, n
    flag = rag.store._BUCKETED  # noqa: SLF001
    if how == "offset":
        rag.store._BUCKETED = "no such key"  # noqa: SLF001
    try:
        n = sum(len(ids) for ids, _, _ in store.scan_chunks())
    finally:
        rag.store._BUCKETED = flag  # noqa: SLF001
    return time.perf_counter() - t, n


def list_docs(store: Any, how: str) -> tuple[float, int]:
    t = time.perf_counter()
    flag = rag.store._BUCKETED  # noqa: SLF001
    if how == "offset":
        rag.store._BUCKETED = "no such key"  # noqa: SLF001
    try:
        n = len(store.list_documents())
    finally:
        rag.store._BUCKETED = flag  # noqa: SLF001
    return time.perf_counter() - t, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bucket-scan.json")
    args = parser.parse_args()
    out: list[dict[str, Any]] = []
    for data in args.dirs:
        store = open_store(Settings(data_dir=data))
        chunks = store.count_chunks()
        assert (store._chunks.metadata or {}).get(rag.store._BUCKETED), f"{data}: not a bucketed collection"  # noqa: SLF001
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for how in ("offset", "in", "range"):
                s, n = scan(store, how)
                assert n == chunks, (how, n, chunks)
                times.setdefault(f"scan_chunks/{how}", []).append(s)
                print(f"{data.name}: scan_chunks {how}: {s:.2f} s ({n} chunks)", flush=True)
            for how in ("offset", "in"):
                s, n = list_docs(store, how)
                times.setdefault(f"list_documents/{how}", []).append(s)
                print(f"{data.name}: list_documents {how}: {s:.2f} s ({n} documents)", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        point = {
            "dir": str(data),
            "chunks": chunks,
            "documents": store.count_documents(),
            "page": rag.store._PAGE,  # noqa: SLF001
            "seconds": times,
            "median_s": med,
            "scan_offset_over_in": med["scan_chunks/offset"] / med["scan_chunks/in"],
            "scan_range_over_in": med["scan_chunks/range"] / med["scan_chunks/in"],
            "list_offset_over_in": med["list_documents/offset"] / med["list_documents/in"],
        }
        print(json.dumps({k: v for k, v in point.items() if k != "seconds"}, indent=1), flush=True)
        out.append(point)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
