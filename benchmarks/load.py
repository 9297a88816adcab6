"""Bounded load run against a real server on loopback: concurrent clients mixing /ask, /chat and uploads.

    python benchmarks/load.py                       # starts its own server on the seeds, 8 clients, 30 s
    python benchmarks/load.py --url http://127.0.0.1:8000 --key KEY --clients 8 --seconds 30

Prints one JSON object: requests, errors, throughput and p50/p95 latency per kind. Exit code 1 on any error.
Only loopback URLs are accepted: this is a test of our own server, never of someone else's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Share of each kind of request in the mix; /chat joins when the server has it.
MIX = {"ask": 0.6, "upload": 0.2, "list": 0.1, "chat": 0.1}


def _questions() -> list[str]:
    lines = (ROOT / "seeds" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def _chat_body(schema: dict, question: str) -> dict | None:  # type: ignore[type-arg]
    """A /chat request body (a new conversation each time), or None if the server has no /chat."""
    if "/chat" not in schema.get("paths", {}):
        return None
    return {"message": question}


def run(  # type: ignore[type-arg]
    url: str,
    *,
    clients: int = 8,
    seconds: float = 30.0,
    key: str | None = None,
    seed: int = 0,
    mix: dict[str, float] | None = None,
) -> dict:
    """Drive ``clients`` concurrent clients for ``seconds``; return counts, errors and latency percentiles."""
    if urlparse(url).hostname not in LOOPBACK:
        raise ValueError("load runs only against a server on this machine (a loopback URL)")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    schema = httpx.get(f"{url}/openapi.json", headers=headers, timeout=30).json()
    questions = _questions()
    has_chat = _chat_body(schema, "x") is not None
    mix = mix or MIX
    kinds = [k for k in mix if mix[k] > 0 and (k != "chat" or has_chat)]
    weights = [mix[k] for k in kinds]
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            i = 0
            while time.monotonic() < deadline:
                kind = rng.choices(kinds, weights)[0]
                question = rng.choice(questions)
                i += 1
                started = time.perf_counter()
                try:
                    if kind == "ask":
                        response = http.post("/ask", json={"question": question})
                    elif kind == "upload":
                        text = f"Load test note {n}-{i}. Client {n} wrote this note about {question.lower()}"
                        response = http.post("/documents", json={"doc_id": f"load/{seed}/{n}/{i % 20}", "text": text})
                    elif kind == "list":
                        response = http.get("/documents")
                    else:
                        response = http.post("/chat", json=_chat_body(schema, question))
                    ok = 200 <= response.status_code < 300
                    detail = f"{kind} {response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{kind} {type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies[kind].append(elapsed)
                    if not ok:
                        errors.append(detail)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 180)
    wall = time.monotonic() - started
    total = sum(len(v) for v in latencies.values())
    every = [x for v in latencies.values() for x in v]
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": total,
        "errors": len(errors),
        "error_samples": errors[:5],
        "requests_per_s": round(total / wall, 1) if wall else 0.0,
        "p50_ms": _pct(every, 50),
        "p95_ms": _pct(every, 95),
        "by_kind": {
            k: {"requests": len(v), "p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for k, v in latencies.items() if v
        },
    }


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _own_server(workdir: Path, chroma_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """Index the seeds into a fresh store and serve them from a separate process (as `rag serve` would)."""
    env = {**os.environ, "RAG_DATA_DIR": str(workdir / "data"), "RAG_LOG_FORMAT": "text", "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_API_KEYS", None)
    if chroma_url:
        env.update(RAG_CHROMA_URL=chroma_url, RAG_COLLECTION=f"load{os.getpid()}")
    cli = [sys.executable, "-m", "api.cli"]
    subprocess.run([*cli, "index", "--quiet", str(ROOT / "seeds")], cwd=ROOT, env=env, check=True, capture_output=True)
    port = _free_port()
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (lives as long as the server)
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the server did not become ready; see {workdir / 'server.log'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (loopback); default: start one on the seeds")
    parser.add_argument("--key", help="API key, when the server has RAG_API_KEYS")
    parser.add_argument("--chroma-url", help="with no --url: serve from this Chroma server instead of embedded")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--mix", default=",".join(f"{k}={v}" for k, v in MIX.items()), help="weights, e.g. ask=1 for questions only"
    )
    args = parser.parse_args()
    mix = {k: float(v) for k, v in (item.split("=") for item in args.mix.split(","))}
    if set(mix) - set(MIX):
        parser.error(f"--mix kinds are {', '.join(MIX)}")
    if args.url:
        result = run(args.url, clients=args.clients, seconds=args.seconds, key=args.key, mix=mix)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            server, url = _own_server(Path(tmp), args.chroma_url)
            try:
                result = run(url, clients=args.clients, seconds=args.seconds, mix=mix)
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
