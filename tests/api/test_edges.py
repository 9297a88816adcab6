"""Every edge (rag serve, rag eval, rag index, rag ask) builds the embedder the settings describe.

`rag serve` and `rag eval` once built it without RAG_PRECISION, so the setting silently did nothing there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from rag.embedding import SentenceTransformerEmbedder
from tests.conftest import copy_seeds, make_settings
from tests.rag.test_evaluate import _tiny_beir

# fp32 and bf16 are both honoured on a CPU, and "auto" resolves to one of them: one case fails wherever an edge
# ignores the setting.
PRECISIONS = ["fp32", "bf16"]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[SentenceTransformerEmbedder]:
    """Every embedder constructed during the test."""
    made: list[SentenceTransformerEmbedder] = []
    original = SentenceTransformerEmbedder.__init__

    def recording(self: SentenceTransformerEmbedder, **kwargs: str) -> None:
        original(self, **kwargs)
        made.append(self)

    monkeypatch.setattr(SentenceTransformerEmbedder, "__init__", recording)
    return made


def _serve(tmp_path: Path, precision: str) -> None:
    settings = make_settings(tmp_path / "data", device="cpu", precision=precision)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200


def _eval(tmp_path: Path, precision: str) -> None:
    root = _tiny_beir(tmp_path / "tiny")
    assert main(["eval", str(root), "--out", str(tmp_path / "out"), "--quiet"]) == 0


def _index(tmp_path: Path, precision: str) -> None:
    assert main(["index", str(copy_seeds(tmp_path / "seeds")), "--quiet"]) == 0


def _ask(tmp_path: Path, precision: str) -> None:
    main(["ask", "Who heads the Special VRAEM Commando unit?"])  # an empty index: the answer does not matter


@pytest.mark.parametrize("edge", [_serve, _eval, _index, _ask], ids=["serve", "eval", "index", "ask"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_edge_builds_embedder_at_configured_precision(
    edge: Callable[[Path, str], None],
    precision: str,
    built: list[SentenceTransformerEmbedder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_PRECISION", precision)
    edge(tmp_path, precision)
    assert built, "the edge built no embedder"
    assert [(e.device, e.precision) for e in built] == [("cpu", precision)] * len(built)
