"""Does the answerer's confidence hold on small collections? The tuning articles' questions asked of tiny indexes.

The seed is one document of 3 chunks, where idf and BM25 scores are coarse; the answerer was fitted on an index of
24 articles. This asks each tuning article's questions (SQuAD v1.1 answerable, SQuAD 2.0 adversarial, and
off-topic ones from the other tuning articles) of an index holding only that article (``--group 0``) or only ``G``
consecutive paragraphs of it (``--group G``, the paragraphs the question is about among them), and prints the
validation articles' figures with the committed model beside those of the 24-article index (answerer_data.py).

    python benchmarks/small_collections.py --group 4 --out /tmp/small-g4 [--reference /tmp/rag-answerer/examples.pkl]
    python benchmarks/small_collections.py --group 1 --out /tmp/small-g1   # 1,005 indexes, about 15 minutes
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.answerer_data import DATASETS, Example, collect, dump, split_tune_articles  # noqa: E402
from benchmarks.train_answerer import answer_rows, auc, calibration_error  # noqa: E402
from index.corpus import index_corpus  # noqa: E402
from index.pipeline import build_indexer  # noqa: E402
from rag.answering import answer_weights  # noqa: E402
from rag.answering.scoring import Layer  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluation.references import iter_corpus  # noqa: E402
from rag.factory import build_embedder, build_service, open_store  # noqa: E402
from rag.store import close_embedded_stores  # noqa: E402


def build(group: int, out: Path) -> list[Example]:
    v1, v2 = DATASETS / "squad-v1.1-dev", DATASETS / "squad-v2.0-dev-tune"
    split_of = split_tune_articles(v1)
    docs = list(iter_corpus(v1))
    article_of = {d.doc_id: d.title for d in docs}
    questions = [json.loads(line) for line in (v1 / "queries.jsonl").open(encoding="utf-8")]
    adversarial = [json.loads(line) for line in (v2 / "queries.jsonl").open(encoding="utf-8")]
    v2_text = {d.doc_id: d.text for d in iter_corpus(v2)}
    doc_of_text = {d.text: d.doc_id for d in docs}
    groups = []
    for title in sorted(split_of):
        ids = [d.doc_id for d in docs if d.title == title]
        step = group or len(ids)
        groups += [(title, ids[i : i + step]) for i in range(0, len(ids), step)]
    rng = random.Random(1)
    embedder = build_embedder(Settings(data_dir=out))
    examples: list[Example] = []
    for n, (title, ids) in enumerate(groups):
        settings = Settings(data_dir=out / f"g{n}")
        if not (settings.data_dir / "chroma").exists():
            index_corpus(build_indexer(settings, store=open_store(settings), embedder=embedder), v1, only=ids)
        inside = set(ids)

        def item(q: dict[str, Any], kind: str, title: str = title) -> dict[str, Any]:
            return {
                "qid": q["_id"],
                "question": q["text"],
                "article": title,
                "split": split_of[title],
                "kind": kind,
                "answers": list(q["metadata"].get("answers") or []),
            }

        answerable = [item(q, "answerable") for q in questions if q["metadata"]["gold_doc"] in inside]
        unanswerable = [
            item(q, "adversarial")
            for q in adversarial
            if q["metadata"].get("unanswerable") and doc_of_text.get(v2_text[q["metadata"]["gold_doc"]]) in inside
        ]
        others = [
            q
            for q in questions
            if article_of[q["metadata"]["gold_doc"]] in split_of and article_of[q["metadata"]["gold_doc"]] != title
        ]
        offtopic = [item(q, "offtopic") for q in rng.sample(others, max(2, len(answerable) // 2))]
        service = build_service(settings, embedder=embedder)
        examples += collect(service, answerable + unanswerable + offtopic, top_k=settings.top_k)
        close_embedded_stores()  # each holds some 16 files open, and --group 1 opens a thousand
    dump(examples, out / "examples.pkl")
    return examples


def figures(examples: list[Example], threshold: float) -> dict[str, float]:
    """The committed model's figures on the validation articles."""
    val = [e for e in examples if e.split == "validation"]
    x, y = answer_rows(val, answer_weights.SENTENCE_MODEL, answer_weights.EXTRA_SENTENCE_RATIO)
    p = 1 / (1 + np.exp(-Layer.from_dict(answer_weights.CONFIDENCE_MODEL)(x)))
    kind = np.array([e.kind for e in val])
    out = {"questions": len(val), "ece": calibration_error(p, y), "auc": auc(p, y)}
    for k in ("answerable", "adversarial", "offtopic"):
        out[f"{k}_answered"] = float(np.mean(p[kind == k] >= threshold))
    return {k: round(float(v), 4) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=4, help="paragraphs per index (0: a whole article)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/small-collections"))
    parser.add_argument("--reference", type=Path, default=None, help="answerer_data.py's examples.pkl, for beside")
    args = parser.parse_args()
    cached = args.out / "examples.pkl"
    if cached.is_file():
        with cached.open("rb") as f:
            examples = pickle.load(f)
    else:
        examples = build(args.group, args.out)
    point = answer_weights.MIN_CONFIDENCE
    print(json.dumps({"group": args.group, "threshold": point, "small": figures(examples, point)}))
    if args.reference is not None:
        with args.reference.open("rb") as f:
            print(json.dumps({"reference": figures(pickle.load(f), point)}))


if __name__ == "__main__":
    main()
