"""Helpers for the tests that start real servers (Chroma, the model server, API replicas) as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def wait_until_ok(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    timeout: float,
    interval: float = 0.3,
    exited: Callable[[], str] | None = None,
) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout`` passes (False); raise if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = exited() if exited else ""
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} {detail}".rstrip())
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False


class RagServe:
    """`python -m api.cli serve` in its own process on a free loopback port, its output in ``log``.

    ``env`` is the whole RAG_* environment of the process (the tests' own RAG_* variables do not leak in).
    """

    def __init__(self, env: dict[str, str], log: Path, *, startup_s: float = 180) -> None:
        from tests.conftest import ROOT, free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.startup_s = startup_s
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> RagServe:
        try:
            if wait_until_ok(self.process, f"{self.url}/health", timeout=self.startup_s, exited=self.log_tail):
                return self
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"rag serve did not start in {self.startup_s:g} s: {self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output (for assertion messages)."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()
