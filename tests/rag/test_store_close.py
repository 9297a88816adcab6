"""close_embedded_stores: a tool that opens many embedded indexes one after another releases their files.

Run in a process of its own (real Chroma, embedded in temp dirs): closing every embedded store of the test
session's process would close the stores other tests hold open.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = """
import json, os, sys
from pathlib import Path
from rag.config import Settings
from rag.factory import open_store
from rag.store import close_embedded_stores

def open_files():
    return len(os.listdir("/proc/self/fd"))

close = sys.argv[2] == "close"
counts = [open_files()]
for cycle in range(3):  # a tool opening index after index
    for n in range(4):
        open_store(Settings(data_dir=Path(sys.argv[1]) / f"c{cycle}s{n}")).count_documents()
    counts.append(open_files())
    if close:
        close_embedded_stores()
    counts.append(open_files())
# A store opened after a close works.
reopened = open_store(Settings(data_dir=Path(sys.argv[1]) / "c0s0")).count_documents()
print(json.dumps({"counts": counts, "reopened": reopened}))
"""


def run(folder: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), mode], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_closing_embedded_stores_releases_their_files(tmp_path: Path) -> None:
    kept = run(tmp_path / "kept", "keep")["counts"]
    closed = run(tmp_path / "closed", "close")
    counts = closed["counts"]
    assert isinstance(kept, list) and isinstance(counts, list)
    # Without closing, every store's files stay open: three rounds of four stores hold many more than one round.
    assert kept[-1] - kept[0] >= 3 * 12
    # Closing after each round: each round opens files and gives them back, so the count does not grow.
    after_close = counts[2::2]
    assert all(opened - before >= 12 for before, opened in zip(counts[0::2], counts[1::2], strict=False))
    assert max(after_close) - after_close[0] <= 6 and after_close[-1] < kept[-1] - 24
    assert closed["reopened"] == 0
