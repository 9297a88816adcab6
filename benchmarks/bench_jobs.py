"""Ingestion jobs, measured on a real `rag serve`: upload-to-done for a 2 MB text and a 100-page PDF, and /ask
latency while a job runs against idle, side by side in one run (README, "Jobs").

    python benchmarks/bench_jobs.py [--text-mb 2] [--pages 100] [--out benchmarks/results/jobs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pdfs import pdf_file  # noqa: E402

SEED = ROOT / "seeds" / "000_191f6743ea9cf91a.txt"
QUESTIONS = [json.loads(line)["question"] for line in (ROOT / "seeds" / "questions.jsonl").open(encoding="utf-8")]


def log(msg: str) -> None:
    print(f"[bench-jobs {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def synthetic_text(chars: int) -> str:
    """Paragraphs of the seed document's words in a rotating order, numbered so no two are the same."""
    words = SEED.read_text(encoding="utf-8").split()
    paragraphs, size, i = [], 0, 0
    while size < chars:
        at = (i * 37) % len(words)
        paragraph = " ".join(words[at : at + 80]) + f" Paragraph {i} ends here."
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
        i += 1
    return "\n\n".join(paragraphs)


def pdf_bytes(pages: list[str]) -> bytes:
    """A text PDF of one page per string (each string drawn as lines of ~90 characters)."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        words, lines, line = text.replace("(", "").replace(")", "").split(), [], ""
        for word in words:
            if len(line) + len(word) > 90:
                lines.append(line)
                line = ""
            line += word + " "
        lines.append(line)
        body = "BT /F1 9 Tf 11 TL 40 760 Td " + " ".join(f"({ln}) Tj T*" for ln in lines[:66]) + " ET"
        stream = body.encode("latin-1", "replace")
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
        content = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    return pdf_file(objects)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ask_once(client: httpx.Client, i: int) -> float:
    t0 = time.perf_counter()
    response = client.post("/ask", json={"question": QUESTIONS[i % len(QUESTIONS)]})
    response.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def run_job(client: httpx.Client, *, ask: bool, **post: Any) -> dict[str, Any]:
    """Post one upload as a job, asking questions meanwhile if ``ask``; seconds to done and the /ask latencies."""
    t0 = time.perf_counter()
    accepted = client.post("/documents", headers={"Prefer": "respond-async"}, **post)
    accepted.raise_for_status()
    url = accepted.headers["location"]
    latencies: list[float] = []
    last_poll = 0.0
    i = 0
    while True:
        if ask:
            latencies.append(ask_once(client, i))
            i += 1
        else:
            time.sleep(0.25)
        if time.perf_counter() - last_poll > 1.0:
            last_poll = time.perf_counter()
            job = client.get(url).json()
            if job["status"] not in {"queued", "running"}:
                break
    seconds = time.perf_counter() - t0
    if job["status"] != "done":
        raise RuntimeError(f"job ended {job['status']}: {job}")
    return {"seconds": round(seconds, 1), "chunks": job["progress"]["total"], "ask_ms": latencies}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-mb", type=float, default=2.0)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--idle-asks", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "jobs.json")
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(data), "RAG_LOG_FORMAT": "text", "PYTHONPATH": str(ROOT)}
    with (data / "serve.log").open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("rag serve did not start")
                time.sleep(0.3)
            client.post("/documents", json={"doc_id": "seed", "text": SEED.read_text(encoding="utf-8")})
            for i in range(5):
                ask_once(client, i)  # warm up
            idle = [ask_once(client, i) for i in range(args.idle_asks)]
            text = synthetic_text(int(args.text_mb * 1_000_000))
            log(f"idle /ask p50 {np.percentile(idle, 50):.1f} ms; uploading {len(text.encode()) / 1e6:.2f} MB of text")
            big = run_job(client, ask=True, json={"doc_id": "big.txt", "text": text})
            busy = big.pop("ask_ms")
            log(
                f"2 MB text: done in {big['seconds']} s ({big['chunks']} chunks); /ask p50 while it ran "
                f"{np.percentile(busy, 50):.1f} ms over {len(busy)} questions"
            )
            results: dict[str, Any] = {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "load_average_at_start": os.getloadavg(),
                "text": {"megabytes": round(len(text.encode()) / 1e6, 2), **big},
                "ask_ms": {
                    "idle": {
                        "p50": round(float(np.percentile(idle, 50)), 1),
                        "p90": round(float(np.percentile(idle, 90)), 1),
                        "n": len(idle),
                    },
                    "during_job": {
                        "p50": round(float(np.percentile(busy, 50)), 1),
                        "p90": round(float(np.percentile(busy, 90)), 1),
                        "n": len(busy),
                    },
                },
            }
            if args.pages:
                words = synthetic_text(args.pages * 3200).split()
                per = len(words) // args.pages
                pdf = pdf_bytes([" ".join(words[p * per : (p + 1) * per]) for p in range(args.pages)])
                files = {"file": ("report.pdf", pdf, "application/pdf")}
                doc = run_job(client, ask=False, files=files)
                doc.pop("ask_ms")
                results["pdf"] = {"pages": args.pages, "megabytes": round(len(pdf) / 1e6, 2), **doc}
                log(f"{args.pages}-page PDF: done in {doc['seconds']} s ({doc['chunks']} chunks)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
