"""Shared fixtures: the real model (loaded once), real Chroma in temp dirs, a real server on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_DOC_ID = "000_191f6743ea9cf91a.txt"


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
    return Settings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]


def copy_seeds(dest: Path) -> Path:
    """A private copy of the seed documents (tests may change it)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in SEEDS.glob("*.txt"):
        shutil.copy(path, dest / path.name)
    return dest


def index_folder(settings: Settings, embedder: SentenceTransformerEmbedder, *paths: Path):  # type: ignore[no-untyped-def]
    from index.pipeline import Indexer
    from rag.service import open_store

    indexer = Indexer(
        store=open_store(settings),
        embedder=embedder,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
    )
    return indexer.index_paths(list(paths))


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
