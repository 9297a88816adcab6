"""Chat latency on the seeds over real HTTP: /ask vs a /chat follow-up, and time to the first streamed delta.

    python benchmarks/chat_bench.py [--rounds 20]

Indexes seeds/ into a temporary store, serves the app with uvicorn on a loopback port and prints p50/p95 in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.factory import build_embedder  # noqa: E402
from tests.conftest import LiveServer, copy_seeds, index_folder, make_settings  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    embedder = build_embedder(Settings(device="cpu"))
    embedder.load()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp) / "data")
        index_folder(settings, embedder, copy_seeds(Path(tmp) / "seeds"))
        with LiveServer(create_app(settings, embedder=embedder)) as server, httpx.Client(timeout=60) as client:
            times: dict[str, list[float]] = {
                "ask": [],
                "chat_first": [],
                "chat_followup": [],
                "stream_first_delta": [],
                "stream_total": [],
            }
            client.post(f"{server.url}/ask", json={"question": "warm up"})
            for _ in range(args.rounds):
                t = time.perf_counter()
                client.post(f"{server.url}/ask", json={"question": "when was Alipio killed?"}).raise_for_status()
                times["ask"].append(time.perf_counter() - t)
                t = time.perf_counter()
                first = client.post(f"{server.url}/chat", json={"message": "Who is Alipio?"}).json()
                times["chat_first"].append(time.perf_counter() - t)
                t = time.perf_counter()
                body = {"conversation_id": first["conversation_id"], "message": "when was he killed?"}
                client.post(f"{server.url}/chat", json=body).raise_for_status()
                times["chat_followup"].append(time.perf_counter() - t)
                t = time.perf_counter()
                first_delta = None
                with client.stream("POST", f"{server.url}/chat", json={**body, "stream": True}) as response:
                    for line in response.iter_lines():
                        if first_delta is None and line.startswith("event: delta"):
                            first_delta = time.perf_counter() - t
                times["stream_first_delta"].append(first_delta or float("nan"))
                times["stream_total"].append(time.perf_counter() - t)
    print(f"{'request':<22}{'p50 ms':>9}{'p95 ms':>9}   ({args.rounds} rounds, seeds, CPU)")
    for name, values in times.items():
        print(f"{name:<22}{statistics.median(values) * 1000:>9.1f}{_pct(values, 0.95) * 1000:>9.1f}")


if __name__ == "__main__":
    main()
