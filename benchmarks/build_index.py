"""Build (or refresh) the index of a BEIR corpus into a data dir, once, so evaluation runs can reuse it.

python benchmarks/build_index.py ../shared/datasets/scifact /tmp/eval-scifact
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from index.corpus import index_corpus  # noqa: E402
from index.pipeline import build_indexer  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.factory import build_embedder, open_store  # noqa: E402


def main() -> None:
    corpus, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    settings = Settings(data_dir=data_dir)
    indexer = build_indexer(settings, store=open_store(settings), embedder=build_embedder(settings))
    report = index_corpus(indexer, corpus, show_progress=True)
    print(report.summary(), flush=True)


if __name__ == "__main__":
    main()
