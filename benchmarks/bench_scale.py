"""Growth benchmark (`make bench-scale`, or `python benchmarks/bench.py --mode scale`): the service against the size of
its collection, measured from outside, over HTTP, with two `rag serve` replicas on one Chroma server.

For each size (default 10^4 and 10^5 chunks; `--sizes 10000,100000,1000000` for 10^6):

1. Build (or grow, or reuse) a synthetic collection: copies of the chunks of a real embedded index (text, offsets,
   stored sentence vectors, a new document id per copy; vectors + N(0, 0.01) jitter, renormalised, as the scaling
   curve of bench_query does), written through ChromaStore.replace_documents into an embedded store. Sizes grow one
   from the other: WORK/n<size> starts as a copy of the previous size's directory. Build rate and disk size recorded.
2. Serve it: `chroma run --path WORK/n<size>/chroma` (the server reads the embedded store's files) and two `rag serve`
   replicas (A and B, each its own RAG_DATA_DIR) with RAG_CHROMA_URL pointing at it.
3. Measure: start-up (process start to GET /ready 200, then the first /ask; and a restart of A with its data dir
   kept), cold /ask p50/p95 on A (every question new: SQuAD dev), the first /ask on A right after a one-document
   upload to A (p50, and its ratio to the cold p50), upload-to-answerable in B (a document with a made-up word goes
   to A; B is asked about that word every 50 ms until a citation comes from the new document; capped), and the RSS
   of each replica (VmRSS after the asks) and of the Chroma server.

The uploaded documents are deleted again at the end of each size, so a kept build directory (`--work DIR --keep`, or
`--reuse DIR`) can serve a later run. Only stable interfaces are used (HTTP, ChromaStore.replace_documents, Settings,
rag.factory), so the same script measures the code before and after a change to retrieval.

Writes benchmarks/results/bench-scale.json and benchmarks/results/scale.png (override with --json / --plot).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ingest import log, pct  # noqa: E402

DEFAULT_BASE = Path("/tmp/rag-eval/squad")
DATA = ROOT.parent / "shared" / "datasets"
MANIFEST = "scale-manifest.json"
HTTP_SLACK_S = 60.0  # on top of each step's cap, for one request already in flight


# --- building (runs in a child process: an embedded Chroma client keeps its directory until the process ends) ----
def grow(base_data: str, dest_data: str, target: int) -> dict[str, Any]:
    """Add jittered copies of the base index's chunks to ``dest_data`` until it holds ``target`` chunks."""
    import numpy as np

    from benchmarks.copies import copy_batch, read_base
    from rag.config import Settings
    from rag.factory import open_store

    dest_dir = Path(dest_data)
    manifest = dest_dir / MANIFEST
    # BENCH_SCALE_RAW=1: write the same records in the store's layout without its write path's per-document locks and
    # change log (new documents, one writer): ~2x faster, for reaching 10^6 chunks on 2 cores.
    raw = os.environ.get("BENCH_SCALE_RAW") == "1"
    state = json.loads(manifest.read_text()) if manifest.exists() else {"chunks": 0, "copies": 0, "seconds": 0.0}
    if state["chunks"] >= target:  # reused: the rate of the build that made it
        return {"added": 0, "reused": True, "chunks_per_s": state["chunks"] / max(state["seconds"], 1e-9), **state}
    t_read = time.perf_counter()
    base = read_base(Path(base_data))
    read_s = time.perf_counter() - t_read

    dest = open_store(Settings(data_dir=dest_dir))
    parts = {"prepare": 0.0, "chunks_get": 0.0, "chunks_upsert": 0.0, "docs_upsert": 0.0, "chunks_delete": 0.0}
    _, chunks_coll, docs_coll, _ = dest._open()  # noqa: SLF001

    def timed(obj: Any, name: str, key: str) -> None:
        inner = getattr(obj, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                parts[key] += time.perf_counter() - t

        setattr(obj, name, wrapper)

    try:
        timed(chunks_coll, "get", "chunks_get")
        timed(chunks_coll, "upsert", "chunks_upsert")
        timed(chunks_coll, "delete", "chunks_delete")
        timed(docs_coll, "upsert", "docs_upsert")
        wrapped = True
    except (AttributeError, TypeError, ValueError):  # a collection class that refuses attributes: totals only
        wrapped = False
    rng = np.random.default_rng(1000 + state["copies"])
    n_base = len(base)
    count, copy, added = state["chunks"], state["copies"], 0
    t0 = time.perf_counter()
    write_s = 0.0
    while count < target:
        t = time.perf_counter()
        take = min(n_base, target - count)
        batch = copy_batch(base, copy, take, rng)
        parts["prepare"] += time.perf_counter() - t
        t = time.perf_counter()
        if raw:
            raw_write(dest, batch)
        else:
            dest.replace_documents(batch)
        write_s += time.perf_counter() - t
        count += take
        added += take
        copy += 1
        # After every batch, so that a run stopped halfway leaves a directory the next run grows on.
        done = {"chunks": count, "copies": copy, "seconds": state["seconds"] + time.perf_counter() - t0}
        manifest.write_text(json.dumps({**done, "base_chunks": n_base}) + "\n")
        if copy % 10 == 0:
            log(f"build: {count} chunks ({added / (time.perf_counter() - t0):.0f} chunks/s)")
    if raw:  # no change log entries: the replicas are started after the build and read the collection
        dest.bump_generation()
    seconds = time.perf_counter() - t0
    state = {"chunks": count, "copies": copy, "seconds": state["seconds"] + seconds, "base_chunks": n_base}
    manifest.write_text(json.dumps(state) + "\n")
    breakdown = {k: v for k, v in parts.items() if wrapped or k == "prepare"}
    if wrapped:  # the rest of replace_documents: the document locks (a lease record per document) and the counter
        breakdown["locks_and_generation"] = write_s - sum(v for k, v in parts.items() if k != "prepare")
    return {
        **state,  # chunks, copies, seconds (every build of this directory together), base_chunks
        "added": added,
        "grow_seconds": seconds,
        "chunks_per_s": added / seconds,
        "read_base_s": read_s,
        "seconds_by_part": breakdown,
    }


def raw_write(store: Any, batch: list[tuple[Any, list[Any], Any]]) -> None:
    """The chunks and records of new documents, as ChromaStore._write lays them out, without locks or the log."""
    import numpy as np

    from rag.store import _PLACEHOLDER, _chunk_meta, record_meta

    _, chunks_coll, docs_coll, max_batch = store._open()  # noqa: SLF001
    chunks = [c for _, cs, _ in batch for c in cs]
    metas = [_chunk_meta(c, d) for d, cs, _ in batch for c in cs]
    vectors = np.concatenate([v for _, cs, v in batch if len(cs)])
    for lo in range(0, len(chunks), max_batch):
        part = chunks[lo : lo + max_batch]
        chunks_coll.upsert(
            ids=[c.chunk_id for c in part],
            embeddings=vectors[lo : lo + len(part)],
            metadatas=metas[lo : lo + len(part)],
        )
    for lo in range(0, len(batch), max_batch):
        group = batch[lo : lo + max_batch]
        docs_coll.upsert(
            ids=[d.doc_id for d, _, _ in group],
            embeddings=[_PLACEHOLDER for _ in group],
            documents=[d.text for d, _, _ in group],
            metadatas=[record_meta(d, len(cs)) for d, cs, _ in group],
        )


def run_grow(base_data: Path, dest_data: Path, target: int) -> dict[str, Any]:
    out = dest_data.parent / f"grow-{target}.json"
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.bench_scale import grow; "
        "open(sys.argv[5], 'w').write(json.dumps(grow(sys.argv[2], sys.argv[3], int(sys.argv[4]))))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(base_data), str(dest_data), str(target), str(out)],
        cwd=ROOT,
        env=clean_env(),
        check=True,
        timeout=4 * 3600,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return result


def build_base(data: Path, dest: Path) -> None:
    """No embedded index given: index SQuAD v1.1 dev (2,067 paragraphs) with the real pipeline, once."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
        "from index.pipeline import Indexer; from rag.config import Settings; "
        "from rag.factory import build_embedder, open_store; from rag.types import Document; "
        "s = Settings(data_dir=Path(sys.argv[3])); "
        "ix = Indexer(store=open_store(s), embedder=build_embedder(s), chunk_tokens=s.chunk_tokens, "
        "chunk_overlap=s.chunk_overlap); "
        "rows = [json.loads(x) for x in open(sys.argv[2], encoding='utf-8')]; "
        "ix.put_many([Document.from_text(doc_id=r['_id'], source='squad/' + r['_id'], "
        "text=r['title'] + '\\n\\n' + r['text']) for r in rows])"
    )
    log(f"no --base: indexing SQuAD v1.1 dev into {dest} (a few minutes)")
    subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(data / "squad-v1.1-dev" / "corpus.jsonl"), str(dest)],
        cwd=ROOT,
        env=clean_env(),
        check=True,
        timeout=3600,
    )


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


# --- processes ----------------------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["PYTHONPATH"] = str(ROOT)
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


class Procs:
    """Every process this benchmark starts, so that all of them are stopped at the end whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as fh:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.live)):
            self.stop(proc)

    def tail(self, name: str, chars: int = 2000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def wait_for(proc: subprocess.Popen[bytes], url: str, cap_s: float, what: str, tail: str = "") -> float:
    """Seconds until ``url`` answers 200 (polled every 50 ms), measured from now; raise past the cap."""
    import httpx

    t0 = time.perf_counter()
    with httpx.Client(timeout=10) as c:
        while time.perf_counter() - t0 < cap_s:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
            try:
                if c.get(url).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"{what}: {url} not 200 within {cap_s:g} s")


class Replica:
    def __init__(self, procs: Procs, name: str, data_dir: Path, chroma_url: str, extra_env: dict[str, str]) -> None:
        self.procs, self.name, self.data_dir, self.chroma_url, self.extra_env = (
            procs,
            name,
            data_dir,
            chroma_url,
            extra_env,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, ready_cap_s: float, ask_cap_s: float, question: str) -> dict[str, Any]:
        """Start the process; seconds to /ready 200 and to the first answer (both from the process start)."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = clean_env(RAG_DATA_DIR=str(self.data_dir), RAG_CHROMA_URL=self.chroma_url, **self.extra_env)
        t0 = time.perf_counter()
        self.proc = self.procs.start(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env, f"replica-{self.name}"
        )
        ready = wait_for(self.proc, f"{self.url}/ready", ready_cap_s, f"replica {self.name}", "")
        ready_s = time.perf_counter() - t0
        first = ask(self.url, question, ask_cap_s)
        return {
            "ready_s": ready_s,
            "ready_poll_s": ready,
            "first_ask_s": first["s"],
            "first_answer_s": ready_s + first["s"],
            "first_ask_status": first["status"],
        }

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None

    def rss(self) -> dict[str, float]:
        assert self.proc is not None
        return rss_mb(self.proc.pid)


def ask(url: str, question: str, timeout_s: float) -> dict[str, Any]:
    import httpx

    t = time.perf_counter()
    try:
        r = httpx.post(f"{url}/ask", json={"question": question}, timeout=timeout_s)
        status, body = (
            r.status_code,
            (r.json() if r.headers.get("content-type", "").startswith("application/json") else {}),
        )
    except httpx.HTTPError as exc:
        status, body = 0, {"error": repr(exc)}
    return {"s": time.perf_counter() - t, "status": status, "body": body}


def wait_for_repair(url: str, cap_s: float) -> float | None:
    """Seconds until /ready says the start-up repair is over (None: a version without one)."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < cap_s:
        body = httpx.get(f"{url}/ready", timeout=30).json()
        if body.get("start_repair") in {None, "done", "failed"}:
            return None if body.get("start_repair") is None else time.perf_counter() - t0
        time.sleep(0.2)
    return cap_s


def post_document(url: str, doc_id: str, text: str, timeout_s: float) -> float:
    import httpx

    t = time.perf_counter()
    r = httpx.post(
        f"{url}/documents", json={"doc_id": doc_id, "source": f"bench-scale/{doc_id}", "text": text}, timeout=timeout_s
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"POST /documents {doc_id}: {r.status_code} {r.text[:500]}")
    return time.perf_counter() - t


# --- inputs -------------------------------------------------------------------------------------------------------
def load_questions(data: Path, seed: int) -> list[str]:
    rows = [json.loads(line) for line in open(data / "squad-v1.1-dev" / "queries.jsonl", encoding="utf-8")]
    seen, out = set(), []
    for q in rows:
        if q["text"] not in seen:
            seen.add(q["text"])
            out.append(q["text"])
    random.Random(seed).shuffle(out)
    return out


def load_paragraphs(data: Path, seed: int) -> list[str]:
    rows = [json.loads(line) for line in open(data / "scifact" / "corpus.jsonl", encoding="utf-8")]
    random.Random(seed).shuffle(rows)
    return [f"{r['title']}\n\n{r['text']}" for r in rows if len(r["text"]) > 400]


def made_up_word(rng: random.Random) -> str:
    return "zorblaxian" + "".join(rng.choice(string.ascii_lowercase) for _ in range(6))


CITIES = ["Lisbon", "Helsinki", "Valparaiso", "Marseille", "Gdansk", "Porto", "Trieste", "Bergen", "Cork", "Genoa"]


def token_document(word: str, city: str) -> tuple[str, str]:
    """A short document about a made-up word (one chunk), and the question only it answers.

    One chunk, so that the question's nearest neighbour is that chunk: wrapped in two long real paragraphs, its
    chunk lost to the many identical copies of a SQuAD paragraph about treaties (found by both BM25 and the dense
    side) and was not even retrieved, in the replica that took the upload too. This wording was cited 12 times in 12
    at 10^4 chunks; a made-up town, or "Where was ...?", made the answerer refuse now and then.
    """
    text = (
        f"The {word} treaty was signed in {city} in 1987. The {word} treaty ended a long dispute over fishing rights "
        "between the coastal guilds, and it was ratified by the guild councils the following spring. Historians "
        f"still count the {word} treaty among the most durable agreements of its kind."
    )
    return text, f"In which city was the {word} treaty signed?"


def cites(body: dict[str, Any], doc_id: str) -> tuple[bool, bool]:
    cited = any(c.get("doc_id") == doc_id for c in body.get("citations") or [])
    retrieved = any(p.get("doc_id") == doc_id for p in body.get("passages") or [])
    return cited, retrieved


# --- one size -----------------------------------------------------------------------------------------------------
def measure(
    size: int,
    data_dir: Path,
    args: argparse.Namespace,
    questions: list[str],
    paragraphs: list[str],
    procs: Procs,
    scratch: Path,
    rng: random.Random,
) -> dict[str, Any]:
    import httpx

    point: dict[str, Any] = {"chunks": size}
    port = free_port()
    chroma_url = f"http://127.0.0.1:{port}"
    chroma_bin = str(Path(sys.executable).parent / "chroma")
    t0 = time.perf_counter()
    chroma = procs.start(
        [chroma_bin, "run", "--path", str(data_dir / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
        clean_env(),
        f"chroma-{size}",
    )
    wait_for(chroma, f"{chroma_url}/api/v2/heartbeat", 300, "chroma run", procs.tail(f"chroma-{size}"))
    point["chroma_ready_s"] = time.perf_counter() - t0
    extra = {"RAG_CHROMA_TIMEOUT_S": str(args.chroma_timeout)} if args.chroma_timeout else {}
    a = Replica(procs, "A", scratch / f"a-{size}", chroma_url, extra)
    b = Replica(procs, "B", scratch / f"b-{size}", chroma_url, extra)
    uploaded: list[str] = []
    qi = iter(questions)
    cap = args.cap
    try:
        log(f"[{size}] chroma server up in {point['chroma_ready_s']:.1f} s; starting replica A")
        first = a.start(args.ready_cap, cap + HTTP_SLACK_S, next(qi))
        a.stop()
        restart = a.start(args.ready_cap, cap + HTTP_SLACK_S, next(qi))
        start_b = b.start(args.ready_cap, cap + HTTP_SLACK_S, next(qi))
        point["startup"] = {"first_start_a": first, "restart_a": restart, "first_start_b": start_b}
        log(f"[{size}] start-up: {point['startup']}")
        # The start-up repair reads the whole collection in the background once a replica is ready (/ready's
        # start_repair): wait for it, so the latencies below are the steady state, and say how long it took.
        point["start_repair_s"] = {r.name: wait_for_repair(r.url, args.ready_cap) for r in (a, b)}
        log(f"[{size}] start-up repair finished {point['start_repair_s']} s after the measurements began")
        with httpx.Client(timeout=10) as c:
            point["ready_body"] = c.get(f"{a.url}/ready").json()

        lat, errors = [], 0
        for _ in range(args.questions):
            r = ask(a.url, next(qi), cap + HTTP_SLACK_S)
            lat.append(r["s"] * 1000)
            errors += r["status"] != 200
        point["cold"] = {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "n": len(lat), "errors": errors}
        log(f"[{size}] cold /ask on A: {point['cold']}")

        rounds: list[dict[str, Any]] = []
        t_phase = time.perf_counter()
        for r_ in range(args.upload_rounds):
            if r_ >= args.min_rounds and time.perf_counter() - t_phase > args.phase_budget:
                break
            doc_id = f"scale-{args.run_id}-{size}-up{r_}"
            text = "\n\n".join(paragraphs.pop() for _ in range(3))
            post_s = post_document(a.url, doc_id, text, cap + HTTP_SLACK_S)
            uploaded.append(doc_id)
            res = ask(a.url, next(qi), cap + HTTP_SLACK_S)
            rounds.append({"post_s": post_s, "ask_ms": res["s"] * 1000, "status": res["status"]})
        ask_ms = [x["ask_ms"] for x in rounds]
        point["after_upload"] = {
            "p50_ms": pct(ask_ms, 50),
            "max_ms": max(ask_ms),
            "ratio_to_cold_p50": pct(ask_ms, 50) / point["cold"]["p50_ms"],
            "post_p50_s": pct([x["post_s"] for x in rounds], 50),
            "rounds": rounds,
        }
        log(f"[{size}] first /ask on A after an upload to A: p50 {pct(ask_ms, 50):.0f} ms ({len(rounds)} rounds)")

        arounds: list[dict[str, Any]] = []
        t_phase = time.perf_counter()
        for r_ in range(args.answerable_rounds):
            if r_ >= args.min_rounds and time.perf_counter() - t_phase > args.phase_budget:
                break
            word = made_up_word(rng)
            text, question = token_document(word, CITIES[r_ % len(CITIES)])
            doc_id = f"scale-{args.run_id}-{size}-tok{r_}"
            post_s = post_document(a.url, doc_id, text, cap + HTTP_SLACK_S)
            uploaded.append(doc_id)
            t_up = time.perf_counter()
            got: dict[str, Any] = {"post_s": post_s, "word": word, "answerable_s": None, "retrieved_s": None}
            polls, slowest = 0, 0.0
            while time.perf_counter() - t_up < cap:
                res = ask(b.url, question, cap + HTTP_SLACK_S)
                polls += 1
                slowest = max(slowest, res["s"])
                if res["status"] == 200:
                    cited, retrieved = cites(res["body"], doc_id)
                    now = time.perf_counter() - t_up
                    if retrieved and got["retrieved_s"] is None:
                        got["retrieved_s"] = now
                    if cited:
                        got["answerable_s"] = now
                        break
                    if got["retrieved_s"] is not None and now - got["retrieved_s"] > 5:
                        break  # retrieved but not cited for 5 s: a question the answerer refuses (checked on A below)
                time.sleep(0.05)
            got.update(polls=polls, slowest_poll_s=slowest, capped=got["answerable_s"] is None)
            if got["capped"]:  # was the question answerable at all? Ask the replica that took the upload.
                got["b_last"] = {"status": res["status"], "answer": str(res["body"].get("answer", ""))[:200]}
                res = ask(a.url, question, cap + HTTP_SLACK_S)
                got["a_cites"], got["a_retrieves"] = (
                    cites(res["body"], doc_id) if res["status"] == 200 else (False, False)
                )
                # Neither replica cites it: the answerer refused the question, which says nothing about B's delay.
                got["question_failed"] = not got["a_cites"]
            arounds.append(got)
            log(f"[{size}] upload-to-answerable in B, round {r_}: {got}")
        counted = [x for x in arounds if not x.get("question_failed")]
        delays = [x["answerable_s"] if x["answerable_s"] is not None else cap for x in counted]
        seen = [x["retrieved_s"] if x["retrieved_s"] is not None else cap for x in arounds]
        point["upload_to_answerable"] = {
            "p50_s": pct(delays, 50),
            "max_s": max(delays, default=float("nan")),
            "retrieved_p50_s": pct(seen, 50),
            "capped_rounds": sum(x["capped"] for x in counted),
            "question_failed_rounds": len(arounds) - len(counted),
            "cap_s": cap,
            "rounds": arounds,
        }
        rss_a, rss_b = a.rss(), b.rss()
        point["rss_mb"] = {"A": rss_a, "B": rss_b, "chroma": rss_mb(chroma.pid)}
        point["rss_per_chunk_kb"] = {
            "A": rss_a["VmRSS"] * 1024 / size,
            "B": rss_b["VmRSS"] * 1024 / size,
        }
        log(f"[{size}] RSS: {point['rss_mb']}")
    finally:
        if a.proc is not None and a.proc.poll() is None:
            for doc_id in uploaded:  # leave the collection as it was built, for a later --reuse
                try:
                    httpx.delete(f"{a.url}/documents/{doc_id}", timeout=cap + HTTP_SLACK_S)
                except httpx.HTTPError as exc:
                    log(f"could not delete {doc_id}: {exc!r}")
        a.stop()
        b.stop()
        procs.stop(chroma)
    return point


# --- plot and summary ---------------------------------------------------------------------------------------------
def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in points if "rss_mb" in p]
    if not points:
        return
    xs = [p["chunks"] for p in points]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [
        ("cold /ask p50", [p["cold"]["p50_ms"] / 1000 for p in points], "o-"),
        ("cold /ask p95", [p["cold"]["p95_ms"] / 1000 for p in points], "o--"),
        ("first /ask after an upload, p50", [p["after_upload"]["p50_ms"] / 1000 for p in points], "s-"),
        ("upload-to-answerable in replica B, p50", [p["upload_to_answerable"]["p50_s"] for p in points], "^-"),
        ("start-up to first answer", [p["startup"]["first_start_a"]["first_answer_s"] for p in points], "d-"),
        ("restart to first answer", [p["startup"]["restart_a"]["first_answer_s"] for p in points], "d--"),
        ("restart to /ready", [p["startup"]["restart_a"]["ready_s"] for p in points], "x:"),
    ]
    for label, ys, style in series:
        ax.plot(xs, ys, style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the collection")
    ax.set_ylabel("seconds")
    ax.set_title("Latency against collection size (2 replicas, Chroma server)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax2.plot(xs, [p["rss_mb"]["A"]["VmRSS"] for p in points], "o-", label="replica A RSS")
    ax2.plot(xs, [p["rss_mb"]["B"]["VmRSS"] for p in points], "o--", label="replica B RSS")
    ax2.plot(xs, [p["rss_mb"]["chroma"]["VmRSS"] for p in points], "s-", label="Chroma server RSS")
    ax2.set_xscale("log")
    ax2.set_xlabel("chunks in the collection")
    ax2.set_ylabel("MB")
    ax2.set_title("Memory")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(points: list[dict[str, Any]]) -> None:
    print(
        "\n  chunks  build/s  ready  answer1 | restart ready answer1 | cold p50/p95 ms | after-upload p50 ms (x) "
        "| B answerable s | RSS A/B MB (KB/chunk)"
    )
    for p in points:
        if "rss_mb" not in p:
            print(f"{p['chunks']:>8}  failed: {p.get('error', '?')}")
            continue
        s, b = p["startup"], p.get("build", {})
        print(
            f"{p['chunks']:>8} {b.get('chunks_per_s', float('nan')):8.0f} {s['first_start_a']['ready_s']:6.1f} "
            f"{s['first_start_a']['first_answer_s']:7.1f} | {s['restart_a']['ready_s']:13.1f} "
            f"{s['restart_a']['first_answer_s']:7.1f} | {p['cold']['p50_ms']:7.0f} / {p['cold']['p95_ms']:5.0f} | "
            f"{p['after_upload']['p50_ms']:10.0f} ({p['after_upload']['ratio_to_cold_p50']:6.1f}x) | "
            f"{p['upload_to_answerable']['p50_s']:6.2f} (seen {p['upload_to_answerable']['retrieved_p50_s']:.2f}; "
            f"{p['upload_to_answerable']['capped_rounds']} capped) | "
            f"{p['rss_mb']['A']['VmRSS']:.0f}/{p['rss_mb']['B']['VmRSS']:.0f} ({p['rss_per_chunk_kb']['A']:.1f})"
        )


# --- main ---------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma list of collection sizes (chunks)")
    parser.add_argument("--base", type=Path, default=None, help="an embedded index (RAG_DATA_DIR) to copy chunks from")
    parser.add_argument("--data", type=Path, default=DATA, help="../shared/datasets")
    parser.add_argument("--work", type=Path, default=None, help="build directory (default: a temp dir, removed)")
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="a kept build directory: sizes already built there are served as they are (implies --work DIR --keep)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the build directory")
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="build the collections (implies --keep; with --work or --reuse DIR) and exit: no serving, no timing",
    )
    parser.add_argument("--questions", type=int, default=60, help="cold /ask questions per size")
    parser.add_argument("--upload-rounds", type=int, default=10)
    parser.add_argument("--answerable-rounds", type=int, default=5)
    parser.add_argument("--min-rounds", type=int, default=3, help="rounds run even past --phase-budget")
    parser.add_argument("--phase-budget", type=float, default=240, help="seconds per round phase before it stops")
    parser.add_argument("--cap", type=float, default=120, help="cap (s) of each wait for an answer")
    parser.add_argument("--ready-cap", type=float, default=600, help="cap (s) on a replica's start to /ready")
    parser.add_argument("--chroma-timeout", type=float, default=None, help="RAG_CHROMA_TIMEOUT_S for the replicas")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench-scale.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "scale.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # A plain `kill` (SIGTERM) ends the run through the finally blocks below, which stop every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = sorted(int(x.replace("_", "")) for x in args.sizes.split(","))
    args.run_id = f"{int(time.time()) % 100000:05d}"
    rng = random.Random(args.seed * 7919 + int(args.run_id))
    if args.reuse:
        args.work, args.keep = args.reuse, True
    if args.build_only:
        if args.work is None:
            parser.error("--build-only needs --work DIR or --reuse DIR (a temp dir would be removed)")
        args.keep = True
    questions = load_questions(args.data, args.seed)
    paragraphs = load_paragraphs(args.data, args.seed)
    per_size_q = 4 + args.questions + args.upload_rounds
    if per_size_q * len(sizes) > len(questions):
        parser.error("not enough distinct SQuAD questions for these sizes and counts")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "rag", "api", "index"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    )
    result: dict[str, Any] = {
        "what": "growth benchmark (benchmarks/bench_scale.py)",
        "commit": commit,
        # The last commit that changed the measured code (the benchmark's own commits do not change it).
        "code_commit": subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", "rag", "api", "index"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "code_dirty": dirty,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "points": [],
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-run-"))
    procs = Procs(scratch)
    t_all = time.perf_counter()
    try:
        base = args.base
        if base is None:
            base = DEFAULT_BASE if (DEFAULT_BASE / "chroma").exists() else work / "base"
            if not (base / "chroma").exists():
                build_base(args.data, base)
        # Read a copy: opening an index, even to read, may write to it, and another process may be using it.
        base_copy = scratch / "base"
        shutil.copytree(base / "chroma", base_copy / "chroma")
        result["base"] = {"path": str(base)}
        prev: Path | None = None
        for i, size in enumerate(sizes):
            dest = work / f"n{size}"
            state = json.loads((dest / MANIFEST).read_text()) if (dest / MANIFEST).exists() else None
            if state and state["chunks"] > size:
                raise SystemExit(f"{dest} holds {state['chunks']} chunks, more than {size}")
            if state is None and prev is not None:
                log(f"[{size}] starting from a copy of {prev}")
                t = time.perf_counter()
                shutil.copytree(prev, dest)
                copy_s = time.perf_counter() - t
            else:
                copy_s = 0.0
            log(f"[{size}] building into {dest}")
            build = run_grow(base_copy, dest, size)
            build["copy_previous_s"] = copy_s
            build["disk_mb"] = disk_bytes(dest / "chroma") / 2**20
            build["disk_kb_per_chunk"] = build["disk_mb"] * 1024 / size
            log(f"[{size}] build: {build}")
            point: dict[str, Any] = {"chunks": size, "build": build}
            if args.build_only:
                prev = dest
                continue
            q = questions[i * per_size_q : (i + 1) * per_size_q]
            try:
                point.update(measure(size, dest, args, q, paragraphs, procs, scratch, rng))
                point["build"] = build
            except Exception as exc:  # one size failing still leaves the others and the log tails
                point["error"] = repr(exc)
                point["log_tails"] = {n.stem: procs.tail(n.stem) for n in scratch.glob("*.log")}
                log(f"[{size}] FAILED: {exc!r}")
            result["points"].append(point)
            prev = dest
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    finally:
        procs.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["total_s"] = time.perf_counter() - t_all
    if args.build_only:
        log(f"built {', '.join(str(s) for s in sizes)} chunks in {work} in {result['total_s']:.0f} s")
        return 0
    result["machine"]["loadavg_end"] = os.getloadavg()
    args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot(result["points"], args.plot)
    summary(result["points"])
    log(f"saved {args.json} and {args.plot} in {result['total_s']:.0f} s")
    return 0 if all("error" not in p for p in result["points"]) else 1


if __name__ == "__main__":
    sys.exit(main())
