"""/ask latency with a cold cache on an index of >= 1,000 chunks: every question is new to the service.

    python benchmarks/bench_answer.py [--data-dir /tmp/rag-eval/squad] [--questions 300] [--seconds 15]

The index is the whole SQuAD v1.1 dev corpus (2,067 paragraphs, 2,540 chunks; built once by
benchmarks/build_index.py if the data dir is empty). Questions are distinct SQuAD questions, each asked once:
in-process (a fresh service), then over HTTP to a fresh `rag serve` (one client), then by 8 concurrent clients
for --seconds, cycling through questions none of them asked before while there are enough. Writes
benchmarks/results/answer-latency.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_query import ask_in_process, http_bench  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embedding import cpu_flags  # noqa: E402
from rag.factory import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT.parent / "shared" / "datasets" / "squad-v1.1-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/rag-eval/squad"))
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "answer-latency.json")
    args = parser.parse_args()

    if open_store(Settings(data_dir=args.data_dir)).count_chunks() == 0:
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "build_index.py"), str(SQUAD), str(args.data_dir)])
    chunks = open_store(Settings(data_dir=args.data_dir)).count_chunks()
    texts = list(dict.fromkeys(json.loads(line)["text"] for line in (SQUAD / "queries.jsonl").open(encoding="utf-8")))
    random.Random(7).shuffle(texts)
    # Disjoint question sets, so no run sees a question another run asked.
    n = args.questions
    in_process, with_reader, http = texts[:n], texts[n : 2 * n], texts[2 * n :]
    result = {
        "chunks": chunks,
        "cpu_features": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx"))),
        "in_process": ask_in_process(args.data_dir, in_process),
        # The opt-in reader (RAG_READER=true), side by side in the same run.
        "in_process_reader": ask_in_process(args.data_dir, with_reader, reader=True),
        "http": http_bench(args.data_dir, http, args.seconds, sequential=n),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
