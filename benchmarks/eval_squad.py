"""Evaluate SQuAD v1.1 dev on the reporting half of its articles (the other half is where we tune).

SQuAD has only a dev split, so its 48 articles are split in two by a seeded shuffle : the
answerer and the fusion were tuned on the "tune" half; figures are reported on the "report" half. The whole
2,067-paragraph corpus is indexed (retrieval searches every paragraph). Runs once per answer length (1 and 2
sentences at most) and writes eval.json + report.html for each.

    python benchmarks/eval_squad.py [--half report] [--sample 600] [--data-dir /tmp/rag-eval/squad]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.evaluation import _service, index_for_eval  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluation.metrics import evaluate, service_callables  # noqa: E402
from rag.evaluation.references import iter_corpus, load_beir  # noqa: E402
from rag.evaluation.report import render_html  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def article_halves(data: Path, seed: int = 0) -> dict[str, set[str]]:
    """tune / report: disjoint halves of the articles (titles), by a seeded shuffle."""
    titles = sorted({d.title for d in iter_corpus(data)})
    random.Random(seed).shuffle(titles)
    return {"tune": set(titles[0::2]), "report": set(titles[1::2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "squad-v1.1-dev")
    parser.add_argument("--half", choices=["tune", "report"], default="report")
    parser.add_argument("--sample", type=int, default=600, help="questions sampled from the half (0: all)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/rag-eval/squad"))
    parser.add_argument("--sentences", default="1,2", help="answer lengths to evaluate (max sentences)")
    parser.add_argument("--out", type=Path, default=ROOT / "eval-results" / "squad")
    parser.add_argument("--vectors", type=Path, help="precomputed corpus vectors (benchmarks/stored_vectors.py)")
    args = parser.parse_args()

    articles = article_halves(args.data)[args.half]
    article_of = {d.doc_id: d.title for d in iter_corpus(args.data)}
    items = [i for i in load_beir(args.data, split="dev") if article_of[i.gold_doc_ids[0]] in articles]
    random.Random(1).shuffle(items)
    if args.sample:
        items = items[: args.sample]
    settings = Settings(data_dir=args.data_dir)
    if args.vectors:  # store the chunks with the precomputed vectors; index_for_eval then finds them unchanged
        from benchmarks.stored_vectors import StoredVectorEmbedder
        from index.corpus import index_corpus
        from index.pipeline import build_indexer
        from rag.factory import build_embedder, open_store

        embedder = StoredVectorEmbedder(build_embedder(settings), args.vectors)
        indexer = build_indexer(settings, store=open_store(settings), embedder=embedder)
        print(
            index_corpus(indexer, args.data).summary(),
            f"(stored vectors for {embedder.found} chunks, the model for {embedder.missed})",
            file=sys.stderr,
        )
    print(index_for_eval(settings, args.data, progress=sys.stderr.isatty()), file=sys.stderr)
    summary = {}
    for n in [int(x) for x in args.sentences.split(",")]:
        run_settings = settings.model_copy(update={"max_answer_sentences": n})
        ask, rank = service_callables(_service(run_settings))
        setup = {
            "references": f"{args.data} (dev), {args.half} half of the articles ({len(articles)}), seed 0",
            "questions": len(items),
            "max_answer_sentences": n,
            "top_k": settings.top_k,
            "min_confidence": settings.min_confidence,
        }
        run = evaluate(items, ask=ask, rank=rank, progress=sys.stderr.isatty(), setup=setup)
        out = args.out / f"{args.half}-{n}sent"
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(run.to_dict(), ensure_ascii=False, indent=1))
        (out / "report.html").write_text(render_html(run, title=f"SQuAD v1.1 dev, {args.half} half, {n} sentence(s)"))
        summary[f"{n} sentence(s)"] = {k: v for k, v in run.aggregates.items() if k != "counts"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
