"""A short version of benchmarks/load.py in CI: concurrent mixed traffic on a real server, zero errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import create_app
from benchmarks.load import run
from tests.conftest import LiveServer, copy_seeds, index_folder, make_settings


@pytest.mark.slow
def test_load_short_run_has_no_errors(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data")
    index_folder(settings, embedder, copy_seeds(tmp_path / "seeds"))
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        result = run(server.url, clients=4, seconds=8, seed=1)
    assert result["errors"] == 0, result["error_samples"]
    assert result["by_kind"]["ask"]["requests"] >= 4 and result["by_kind"]["upload"]["requests"] >= 1
    assert result["p95_ms"] is not None and result["p50_ms"] <= result["p95_ms"]


def test_load_refuses_a_non_loopback_url() -> None:
    with pytest.raises(ValueError, match="loopback"):
        run("http://192.0.2.1:8000", clients=1, seconds=0.1)
