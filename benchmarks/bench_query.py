"""The query side of `make bench` (benchmarks/bench.py): /ask in-process and in a cold `rag ask`, `rag serve` over HTTP
with 8 concurrent clients, and /ask latency against index size (built from jittered copies of the embedded chunks)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_ingest import log, pct
from benchmarks.copies import copy_batch, read_base
from rag.config import Settings
from rag.factory import build_service, open_store

ROOT = Path(__file__).resolve().parent.parent


# --- /ask -------------------------------------------------------------------------------------------------------
def ask_in_process(data_dir: Path, questions: list[str], *, reader: bool = False) -> dict[str, Any]:
    service = build_service(Settings(data_dir=data_dir, reader=reader))
    service.embedder.load()
    service.answerer.load()
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


def http_bench(data_dir: Path, questions: list[str], seconds: float, *, sequential: int = 0) -> dict[str, Any]:
    """One client, then 8 concurrent ones; with ``sequential``, the one client asks that many questions and the 8
    clients the rest, so no question is asked twice while the rest lasts."""
    import httpx

    if sequential:
        questions, concurrent = questions[:sequential], questions[sequential:]
    else:
        concurrent = questions

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
                        good = c.post(f"{base}/ask", json={"question": concurrent[i % len(concurrent)]}).is_success
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


# --- scaling ----------------------------------------------------------------------------------------------------
def scaling(base_dir: Path, work: Path, sizes: list[int], questions: list[str]) -> list[dict[str, Any]]:
    base = read_base(base_dir)
    dest = open_store(Settings(data_dir=work))
    rng = np.random.default_rng(0)
    n_base = len(base)
    results = []
    count, copy = 0, 0
    for size in sizes:
        while count < size:
            take = min(n_base, size - count)
            dest.replace_documents(copy_batch(base, copy, take, rng))
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
