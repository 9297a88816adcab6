"""Calibrate the no-answer threshold (RAG_MIN_ANSWER_SCORE) on data nobody here wrote: SQuAD v1.1 dev.

Half of SQuAD's 48 articles are indexed; questions about them are on-topic (should be answered), questions about
the other half are off-topic (should be refused: their article is not in the index). Articles, not questions, are
split again into a tuning half and a reporting half: the threshold that maximises balanced accuracy
(mean of the on-topic answer rate and the off-topic refusal rate) on the tuning half, among the thresholds under
which the seeds' own reference set (seeds/questions.jsonl) still passes (every on-topic seed question answered,
every off-topic one refused), is reported with refusal precision and recall on the other half.

    python benchmarks/calibrate_threshold.py [--data ../shared/datasets/squad-v1.1-dev] [--from-store /tmp/eval-squad]

--from-store reuses a store that already holds the whole corpus (benchmarks/build_index.py): it is copied and the
off-topic articles deleted, so nothing is embedded again. Without it the indexed half is embedded from scratch.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from index.corpus import index_corpus  # noqa: E402
from index.pipeline import build_indexer  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embedding import SentenceTransformerEmbedder  # noqa: E402
from rag.evaluation.references import iter_corpus, load_beir  # noqa: E402
from rag.factory import build_embedder, build_service, open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def split_articles(titles: list[str], seed: int) -> dict[str, list[str]]:
    """Four disjoint groups of articles: indexed/not indexed x tune/report."""
    shuffled = sorted(titles)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    indexed, other = shuffled[:half], shuffled[half:]
    return {
        "on_tune": indexed[0::2],
        "on_report": indexed[1::2],
        "off_tune": other[0::2],
        "off_report": other[1::2],
    }


def rates(scores_on: list[float], scores_off: list[float], threshold: float) -> dict[str, float]:
    """Refusal precision/recall (refusing = score below threshold) and the on-topic answer rate."""
    refused_on = sum(s < threshold for s in scores_on)
    refused_off = sum(s < threshold for s in scores_off)
    refused = refused_on + refused_off
    return {
        "refusal_precision": refused_off / refused if refused else 1.0,
        "refusal_recall": refused_off / len(scores_off) if scores_off else 0.0,
        "answer_rate_on_topic": 1 - refused_on / len(scores_on) if scores_on else 0.0,
        "balanced_accuracy": ((1 - refused_on / len(scores_on)) + refused_off / len(scores_off)) / 2,
    }


def seed_scores(embedder: SentenceTransformerEmbedder, work: Path) -> tuple[list[float], list[float]]:
    """Best evidence scores of the seed reference set's on-topic and off-topic questions over the seeds."""
    settings = Settings(data_dir=work)
    build_indexer(settings, store=open_store(settings), embedder=embedder).index_paths(
        sorted((ROOT / "seeds").glob("*.txt"))
    )
    service = build_service(settings, embedder=embedder)
    on: list[float] = []
    off: list[float] = []
    for line in (ROOT / "seeds" / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        q_emb = embedder.embed_query(item["question"])
        passages = service.retriever.retrieve(item["question"], top_k=settings.top_k, query_embedding=q_emb)
        score = service.answer_passages(item["question"], passages, q_emb).best_score
        (off if item.get("unanswerable") else on).append(score)
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "squad-v1.1-dev")
    parser.add_argument("--from-store", type=Path, default=None, help="a data dir holding the whole corpus")
    parser.add_argument("--per-group", type=int, default=150, help="questions sampled per group of articles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "eval-results" / "threshold.json")
    args = parser.parse_args()

    docs = list(iter_corpus(args.data))
    article_of = {d.doc_id: d.title for d in docs}
    groups = split_articles(sorted({d.title for d in docs}), args.seed)
    indexed_articles = set(groups["on_tune"]) | set(groups["on_report"])
    indexed_docs = {d.doc_id for d in docs if d.title in indexed_articles}

    work = Path(tempfile.mkdtemp(prefix="rag-calibrate-"))
    try:
        settings = Settings(data_dir=work)
        embedder = build_embedder(settings)
        started = time.perf_counter()
        if args.from_store:
            shutil.copytree(Path(args.from_store) / "chroma", work / "chroma")
            store = open_store(settings)
            for doc in docs:
                if doc.doc_id not in indexed_docs:
                    store.delete_document(doc.doc_id)
        else:
            indexer = build_indexer(settings, store=open_store(settings), embedder=embedder)
            index_corpus(indexer, args.data, show_progress=sys.stderr.isatty(), only=indexed_docs)
        print(f"store ready in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        service = build_service(settings, embedder=embedder)
        assert service.store.count_documents() == len(indexed_docs)

        by_group: dict[str, list[str]] = defaultdict(list)
        group_of = {title: name for name, titles in groups.items() for title in titles}
        items = load_beir(args.data, split="dev")
        rng = random.Random(args.seed)
        rng.shuffle(items)
        scores: dict[str, list[float]] = defaultdict(list)
        for item in items:
            group = group_of[article_of[item.gold_doc_ids[0]]]
            if len(by_group[group]) >= args.per_group:
                continue
            by_group[group].append(item.id)
            q_emb = service.embedder.embed_query(item.question)
            passages = service.retriever.retrieve(item.question, top_k=settings.top_k, query_embedding=q_emb)
            scores[group].append(service.answer_passages(item.question, passages, q_emb).best_score)
            if all(len(by_group[g]) >= args.per_group for g in groups):
                break
        seed_on, seed_off = seed_scores(embedder, work / "seeds")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Thresholds under which the seed set passes: above every off-topic seed score, at most the lowest on-topic one.
    candidates = [t for t in sorted({round(x / 200, 3) for x in range(0, 201)}) if max(seed_off) < t <= min(seed_on)]
    tuned = max(
        candidates,
        key=lambda t: (rates(scores["on_tune"], scores["off_tune"], t)["balanced_accuracy"], -t),
    )
    result = {
        "articles": {k: len(v) for k, v in groups.items()},
        "questions": {k: len(v) for k, v in scores.items()},
        "threshold": tuned,
        "tune": rates(scores["on_tune"], scores["off_tune"], tuned),
        "report": rates(scores["on_report"], scores["off_report"], tuned),
        "seed_scores": {"on_topic_min": round(min(seed_on), 3), "off_topic_max": round(max(seed_off), 3)},
        "scores": {g: [round(x, 4) for x in v] for g, v in sorted(scores.items())},
        "score_quantiles": {
            g: [round(sorted(v)[int(q * (len(v) - 1))], 3) for q in (0.05, 0.25, 0.5, 0.75, 0.95)]
            for g, v in sorted(scores.items())
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
