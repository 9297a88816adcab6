"""/ask latency with query-time vs stored (in-context) sentence vectors, side by side over one existing index.

    python benchmarks/bench_sentence_vectors.py DATA_DIR [--questions 40] [--rounds 2] [--seconds 10]

DATA_DIR is an index built by this version (e.g. `python benchmarks/build_index.py ../shared/datasets/squad-v1.1-dev
/tmp/lat-squad`), so its chunks carry stored sentence vectors. Questions are SQuAD v1.1 dev report-half questions
(benchmarks/eval_squad.py's split). The modes alternate, each round in a fresh process state (new service, empty
sentence cache), and every question is asked once per round, so the query mode's cache does not hide its cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_query  # noqa: E402
from benchmarks.eval_squad import article_halves  # noqa: E402
from rag.evaluation.references import iter_corpus, load_beir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = ("query", "stored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "squad-v1.1-dev")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the 8-client load test")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sentence-vectors.json")
    args = parser.parse_args()

    articles = article_halves(args.data)["report"]
    article_of = {d.doc_id: d.title for d in iter_corpus(args.data)}
    items = [i for i in load_beir(args.data, split="dev") if article_of[i.gold_doc_ids[0]] in articles]
    random.Random(2).shuffle(items)
    questions = [i.question for i in items[: args.questions]]

    plain_env_for = bench_query.env_for
    results: dict[str, list[dict[str, object]]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            os.environ["RAG_SENTENCE_VECTORS"] = mode
            bench_query.env_for = lambda d, mode=mode: {**plain_env_for(d), "RAG_SENTENCE_VECTORS": mode}  # type: ignore[misc]
            row = {
                "in_process": bench_query.ask_in_process(args.data_dir, questions),
                "http": bench_query.http_bench(args.data_dir, questions, args.seconds),
            }
            results[mode].append(row)
            print(mode, json.dumps(row), file=sys.stderr, flush=True)
    os.environ.pop("RAG_SENTENCE_VECTORS", None)
    summary = {
        mode: {
            "in_process_p50_ms": sorted(x["in_process"]["p50_ms"] for x in rows),  # type: ignore[index]
            "http_p50_ms": sorted(x["http"]["p50_ms"] for x in rows),  # type: ignore[index]
            "http_p95_ms": sorted(x["http"]["p95_ms"] for x in rows),  # type: ignore[index]
            "req_per_s_8_clients": sorted(x["http"]["concurrency8"]["requests_per_s"] for x in rows),  # type: ignore[index]
            "errors": sum(x["http"]["concurrency8"]["errors"] for x in rows),  # type: ignore[index]
        }
        for mode, rows in results.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"questions": len(questions), "runs": results, "summary": summary}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
