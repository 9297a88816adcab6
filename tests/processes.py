"""Helpers for the tests that start real servers (Chroma, the model server, API replicas) as subprocesses."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

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
