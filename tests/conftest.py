"""Shared fixtures: the real model (loaded once), real Chroma in temp dirs, a real server on a loopback port."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.store import ChromaStore

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_DOC_ID = "000_191f6743ea9cf91a.txt"
# Set by .ci/run (the URL of a `chroma run` it started): store-backed tests then run against the Chroma server
# instead of the embedded store. Read once here, before the autouse fixture clears RAG_* variables.
CHROMA_URL = os.environ.get("RAG_TEST_CHROMA_URL") or None


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RAG_* variable leaks in, and nothing writes into the checkout."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    from rag.config import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real MiniLM model, loaded once per test session."""
    model = SentenceTransformerEmbedder(device="cpu")
    model.load()
    return model


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings of a store of one's own: embedded under data_dir, or, on the shared test Chroma server, a
    collection named after data_dir (so the same data_dir reopens the same store, and tests never share one)."""
    if CHROMA_URL and "chroma_url" not in overrides:
        overrides.setdefault("collection", "t" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:20])
        overrides["chroma_url"] = CHROMA_URL
    return Settings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]


def copy_seeds(dest: Path) -> Path:
    """A private copy of the seed documents (tests may change it)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in SEEDS.glob("*.txt"):
        shutil.copy(path, dest / path.name)
    return dest


def index_folder(settings: Settings, embedder: SentenceTransformerEmbedder, *paths: Path):  # type: ignore[no-untyped-def]
    from index.pipeline import build_indexer
    from rag.factory import open_store

    return build_indexer(settings, store=open_store(settings), embedder=embedder).index_paths(list(paths))


def index_text(base: Path, embedder: SentenceTransformerEmbedder, files: dict[str, str]) -> Settings:
    """Settings of a store of its own under ``base`` holding these documents (name -> text), indexed as a folder."""
    docs = base / "docs"
    docs.mkdir(parents=True)
    for name, text in files.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = make_settings(base / "data")
    index_folder(settings, embedder, docs)
    return settings


@pytest.fixture(scope="session")
def seeded_settings(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Settings:
    """Settings of a store holding the seeds (indexed once per session; treat as read-only)."""
    base = tmp_path_factory.mktemp("seeded")
    settings = make_settings(base / "data")
    index_folder(settings, embedder, copy_seeds(base / "seeds"))
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def seeded_server(seeded_settings: Settings, embedder: SentenceTransformerEmbedder) -> Iterator[LiveServer]:
    """The real app over HTTP, serving the seeds."""
    from api.app import create_app

    with LiveServer(create_app(seeded_settings, embedder=embedder)) as server:
        yield server


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M, once per session; yields its base URL."""
    from tests.llm_servers import LlamaServer

    with LlamaServer(tmp_path_factory.mktemp("llm") / "server.log") as server:
        yield server.base_url


class ChromaServer:
    """A real `chroma run` (the server the chromadb package installs) on a free loopback port, data in a folder."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ChromaServer:
        chroma = Path(sys.executable).with_name("chroma")
        self.log = open(self.path.parent / f"chroma-{self.port}.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        from tests.processes import wait_until_ok

        if wait_until_ok(self.process, f"{self.url}/api/v2/heartbeat", timeout=timeout, interval=0.2):
            return self
        self.stop()
        raise RuntimeError("chroma run did not answer its heartbeat in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self.process = None
        if getattr(self, "log", None) is not None:
            self.log.close()


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chroma server for the tests that need one: .ci/run's (RAG_TEST_CHROMA_URL), else one started here."""
    if CHROMA_URL:
        yield CHROMA_URL
        return
    server = ChromaServer(tmp_path_factory.mktemp("chroma") / "data").start()
    try:
        yield server.url
    finally:
        server.stop()


@dataclass(frozen=True)
class StoredChunks:
    """Every chunk of a store, read through ChromaStore.scan_chunks (ids, texts, metadata without the store's keys)."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]


def stored_chunks(store: ChromaStore) -> StoredChunks:
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    for page_ids, page_texts, page_metas in store.scan_chunks():
        ids += page_ids
        texts += page_texts
        metas += page_metas
    return StoredChunks(ids, texts, metas)
