"""Question embedding latency of the small backends (NumPy vs ONNX Runtime), side by side, one thread.

    python benchmarks/bench_query_embedding.py [--questions 200] [--rounds 3] [--int8]

Each of --questions different SQuAD v1.1 dev questions (field "text") is embedded once per round by every backend,
one backend after another in an order that rotates every round, so load from other processes falls on all of them
alike. Reports p50/p95 ms of ``embed_query`` (tokenising included; wall clock and the thread's CPU time), the time
to build each backend, the lowest cosine between the backends' vectors, and the CPU's flags. --int8 adds ORT dynamic
int8 quantisation (MatMul weights, per channel) of the same graph: measured only, the library does not use it (its
cosine to fp32 stays under 0.999).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.embedding import (  # noqa: E402
    OnnxMiniLM,
    SentenceTransformerEmbedder,
    cpu_flags,
    minilm_onnx_graph,
    model_path,
)

ROOT = Path(__file__).resolve().parent.parent
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _int8_embedder() -> SentenceTransformerEmbedder:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from safetensors.numpy import load_file

    model = minilm_onnx_graph(load_file(str(model_path() / "model.safetensors")))
    with tempfile.TemporaryDirectory() as tmp:  # quantize_dynamic writes its result to a path
        out = os.path.join(tmp, "int8.onnx")
        quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        small = OnnxMiniLM(Path(out).read_bytes())
    embedder = SentenceTransformerEmbedder(small_backend="onnx")
    embedder._small = small  # the benchmark's own model in place of the process-wide fp32 one
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "squad-v1.1-dev")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--int8", action="store_true", help="also measure ORT dynamic int8 (not used by the library)")
    args = parser.parse_args()

    with open(args.data / "queries.jsonl", encoding="utf-8") as fh:
        questions = [json.loads(line)["text"] for line in fh][: args.questions]

    embedders: dict[str, SentenceTransformerEmbedder] = {}
    build_s: dict[str, float] = {}
    for name in ("numpy", "onnx"):
        t0 = time.perf_counter()
        embedders[name] = SentenceTransformerEmbedder(small_backend=name)
        embedders[name].load()
        build_s[name] = time.perf_counter() - t0
    if args.int8:
        t0 = time.perf_counter()
        embedders["onnx-int8"] = _int8_embedder()
        build_s["onnx-int8"] = time.perf_counter() - t0

    for embedder in embedders.values():  # warm-up: first-call allocations, page faults
        for q in questions[:10]:
            embedder.embed_query(q)
    times: dict[str, list[float]] = {name: [] for name in embedders}
    cpu: dict[str, list[float]] = {name: [] for name in embedders}
    vectors: dict[str, list[Any]] = {name: [] for name in embedders}
    names = list(embedders)
    for rnd in range(args.rounds):
        # One backend at a time over all the questions (interleaving them per question let each evict the other's
        # weights from the caches, which a server running one backend never sees); the order rotates every round.
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
            for q in questions:
                t0, c0 = time.perf_counter(), time.thread_time()
                v = embedders[name].embed_query(q)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
                if rnd == 0:
                    vectors[name].append(v)

    flags = sorted(f for f in FLAGS_OF_INTEREST if f in cpu_flags())
    print(f"{len(questions)} questions x {args.rounds} rounds, one thread; CPU flags: {' '.join(flags) or 'none'}")
    print(f"{'backend':<10} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'cpu p95':>8} {'build s':>8} {'min cos':>9}")
    reference = np.stack(vectors["numpy"])
    for name in embedders:
        ms = np.array(times[name]) * 1000
        cos = float((np.stack(vectors[name]) * reference).sum(axis=1).min())
        cpu_ms = np.array(cpu[name]) * 1000
        p50, p95, c50, c95 = (np.percentile(x, p) for x in (ms, cpu_ms) for p in (50, 95))
        print(f"{name:<10} {p50:>8.2f} {p95:>8.2f} {c50:>8.2f} {c95:>8.2f} {build_s[name]:>8.2f} {cos:>9.6f}")
    print(
        "p50/p95: wall-clock ms per embed_query; cpu: this thread's CPU ms (what other processes' load cannot inflate);"
    )
    print("min cos: the lowest cosine to the numpy backend's vector over the questions")


if __name__ == "__main__":
    main()
