"""Training and validation data for the learned answerer, from SQuAD's tuning articles only.

The 24 articles of the "tune" half of SQuAD v1.1 dev (benchmarks/eval_squad.py, seed 0; the "report" half is never
read here) are split again by article into train and validation. Three kinds of question are asked of real indexes
through the real retriever, and each candidate sentence is described by the answerer's own featurize():
- answerable: SQuAD v1.1 questions (the v2.0 answerable ones are the same questions), over an index of the 24
  tuning articles; a sentence is positive when it contains a reference answer;
- adversarial: SQuAD 2.0's unanswerable questions about the same paragraphs, over the same index;
- off-topic: questions about articles that are not in the index (an index of half the tuning articles).

With --scifact-store, SciFact's **train** claims are asked too (statements, not questions, over biomedical
abstracts, with less of their wording in the evidence than SQuAD's questions have): a claim with evidence is
*answerable* (a sentence is positive when it is one of the claim's rationale sentences); a claim whose cited
abstract holds no evidence for it (SciFact's NOINFO) is *noinfo*, an unanswerable question over a corpus that
holds related text. Claims are split into train and validation by the abstracts they cite (a claim and its
negation cite the same abstract and land in one split). SciFact's test claims are never read here.

With --paraphrase, every SQuAD question is also rephrased by rule (benchmarks/paraphrase.py: its paragraph's common
words swapped for MiniLM neighbours the paragraph lacks, names and numbers kept), asked again of the same index,
and written to examples-para.pkl with the same kind and split (qid suffixed ":para"): how the answerer copes with
wording that is not the passage's. train_answerer.py reports on them, and fits on them only with --paraphrases.

With --introductions, short rule-made questions about names that occur once in the tuning index ("Who is X?",
benchmarks/introductions.py) are asked of the tuning index (answerable: a sentence is positive when it holds the
name) and, for the articles left out of the half index, of that index (off-topic), and written to examples-intro.pkl;
train_answerer.py reports on them, and fits on them only with --introductions.

With --articles, each tuning article is indexed alone as one document (its paragraphs joined, chunked as `rag index`
chunks a user's file: the shape of the seed, where every passage comes from one text and dense scores are set by
200-word-piece chunks, not SQuAD's paragraphs) and asked its own questions (as asked, rephrased, "Who is X?", SQuAD
2.0's adversarial ones) and a quarter as many of the same split's other articles' (off-topic); written to
examples-article.pkl with corpus "article". train_answerer.py --pool fits the confidence on it with the rest.

    python benchmarks/answerer_data.py --store /tmp/rag-eval/squad --scifact-store /tmp/rag-eval/scifact \
        --out /tmp/answerer-data --paraphrase --introductions --articles

--store is a data dir holding the whole SQuAD v1.1 corpus (benchmarks/build_index.py); it is copied and the
articles not wanted deleted, so nothing is embedded again.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.eval_squad import article_halves  # noqa: E402
from benchmarks.introductions import introductions  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluation.metrics import containment  # noqa: E402
from rag.evaluation.references import iter_corpus  # noqa: E402
from rag.factory import build_service, open_store  # noqa: E402
from rag.service import RAGService  # noqa: E402
from rag.text import sentence_spans  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
VALIDATION_ARTICLES = 8
SCIFACT_VALIDATION_SHARE = 1 / 3


@dataclass
class Example:
    """One question's candidates as the answerer sees them, with labels."""

    qid: str
    question: str
    article: str
    split: str  # train | validation
    kind: str  # answerable | adversarial | offtopic
    answers: list[str]
    featurized: Any  # rag.answering.extractive.Featurized (passages trimmed to what the features need)
    labels: np.ndarray  # 1 where the candidate sentence contains a reference answer
    corpus: str = "squad"  # squad | scifact


def split_tune_articles(data: Path, seed: int = 0) -> dict[str, str]:
    """Article title -> train | validation, for the tune half only."""
    tune = sorted(article_halves(data)["tune"])
    random.Random(seed).shuffle(tune)
    return {title: ("validation" if i < VALIDATION_ARTICLES else "train") for i, title in enumerate(tune)}


def copy_store(source: Path, target: Path, keep_docs: set[str], settings: Settings) -> None:
    """Copy a store and delete every document not in ``keep_docs``."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source / "chroma", target / "chroma")
    store = open_store(settings.model_copy(update={"data_dir": target}))
    for doc_id in sorted(set(store.document_hashes()) - keep_docs):
        store.delete_document(doc_id)


def collect(service: RAGService, items: list[dict[str, Any]], *, top_k: int) -> list[Example]:
    """Ask every item and keep what the answerer sees."""
    out = []
    started = time.perf_counter()
    for n, item in enumerate(items, start=1):
        q_emb = service.embedder.embed_query(item["question"])
        passages = service.retriever.retrieve(item["question"], top_k=top_k, query_embedding=q_emb)
        found = service.answerer.featurize(item["question"], passages, q_emb, idf=service.retriever.lexical().idf_of)
        labels = np.array([containment(s.text, item["answers"]) for s in found.sentences], dtype=np.float32)
        out.append(Example(featurized=found, labels=labels, **{k: v for k, v in item.items() if k != "passage"}))
        if n % 500 == 0:
            print(f"  {n}/{len(items)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


def scifact_items(data: Path, seed: int = 0) -> list[dict[str, Any]]:
    """SciFact's train claims as items: evidence claims answerable (answers: their rationale sentences), the others
    noinfo; split by cited abstract (sorted groups of abstracts shuffled with ``seed``)."""
    corpus = {d.doc_id: d.text for d in iter_corpus(data)}
    cited: dict[str, list[str]] = {}
    with (data / "qrels" / "train.tsv").open(encoding="utf-8") as f:
        for line in f:
            qid, doc_id, *_ = line.rstrip("\n").split("\t")
            if qid != "query-id":
                cited.setdefault(qid, []).append(doc_id)
    claims = [json.loads(line) for line in (data / "queries.jsonl").open(encoding="utf-8")]
    claims = [c for c in claims if c["metadata"].get("split") == "train" and c["_id"] in cited]
    groups = sorted({min(cited[c["_id"]]) for c in claims})
    random.Random(seed).shuffle(groups)
    validation = set(groups[: int(len(groups) * SCIFACT_VALIDATION_SHARE)])
    items = []
    for c in claims:
        evidence = c["metadata"].get("evidence") or {}
        answers = []
        for doc_id, sets in evidence.items():
            spans = sentence_spans(corpus[doc_id])
            answers += [corpus[doc_id][slice(*spans[i])] for s in sets for i in s["sentences"] if i < len(spans)]
        group = min(cited[c["_id"]])
        items.append(
            {
                "qid": f"scifact:{c['_id']}",
                "question": c["text"],
                "article": f"scifact:{group}",
                "split": "validation" if group in validation else "train",
                "kind": "answerable" if answers else "noinfo",
                "answers": answers,
                "corpus": "scifact",
            }
        )
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/rag-eval/squad"))
    parser.add_argument("--v1", type=Path, default=DATASETS / "squad-v1.1-dev")
    parser.add_argument("--v2", type=Path, default=DATASETS / "squad-v2.0-dev-tune")
    parser.add_argument("--out", type=Path, default=Path("/tmp/answerer-data"))
    parser.add_argument("--offtopic", type=int, default=2000, help="off-topic questions sampled")
    parser.add_argument("--limit", type=int, default=0, help="at most this many questions of each kind (0: all)")
    parser.add_argument("--scifact", type=Path, default=DATASETS / "scifact")
    parser.add_argument(
        "--scifact-store", type=Path, default=None, help="a data dir holding the whole SciFact corpus (build_index.py)"
    )
    parser.add_argument("--only-scifact", action="store_true", help="write examples-scifact.pkl alone")
    parser.add_argument(
        "--paraphrase",
        action="store_true",
        help="also write examples-para.pkl: every question rephrased by benchmarks/paraphrase.py, asked again",
    )
    parser.add_argument("--only-paraphrase", action="store_true", help="write examples-para.pkl alone")
    parser.add_argument(
        "--introductions",
        action="store_true",
        help="also write examples-intro.pkl: rule-made 'Who is X?' questions (benchmarks/introductions.py)",
    )
    parser.add_argument("--only-introductions", action="store_true", help="write examples-intro.pkl alone")
    parser.add_argument(
        "--articles",
        action="store_true",
        help="also write examples-article.pkl: each tuning article indexed alone as one chunked document, asked its "
        "own questions (as asked, rephrased, 'Who is X?', adversarial) and other articles' (off-topic)",
    )
    parser.add_argument("--only-articles", action="store_true", help="write examples-article.pkl alone")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.scifact_store is not None:
        scifact = build_service(Settings(data_dir=args.scifact_store))
        items = scifact_items(args.scifact)
        print(f"scifact: {len(items)} claims", file=sys.stderr)
        dump(collect(scifact, items, top_k=scifact.default_top_k), args.out / "examples-scifact.pkl")
    if args.only_scifact:
        return

    split_of = split_tune_articles(args.v1)
    docs = list(iter_corpus(args.v1))
    article_of = {d.doc_id: d.title for d in docs}
    v1 = [json.loads(line) for line in (args.v1 / "queries.jsonl").open(encoding="utf-8")]
    v2 = [json.loads(line) for line in (args.v2 / "queries.jsonl").open(encoding="utf-8")]
    v2_text = {d.doc_id: d.text for d in iter_corpus(args.v2)}
    doc_of_text = {d.text: d.doc_id for d in docs}
    text_of = {d.doc_id: d.text for d in docs}

    def item(q: dict[str, Any], kind: str, article: str, passage: str) -> dict[str, Any]:
        return {
            "qid": q["_id"],
            "question": q["text"],
            "article": article,
            "split": split_of[article],
            "kind": kind,
            "answers": list(q["metadata"].get("answers") or []),
            "passage": passage,
        }

    answerable = [
        item(q, "answerable", article_of[q["metadata"]["gold_doc"]], text_of[q["metadata"]["gold_doc"]])
        for q in v1
        if article_of[q["metadata"]["gold_doc"]] in split_of
    ]
    adversarial = [
        item(
            q,
            "adversarial",
            article_of[doc_of_text[v2_text[q["metadata"]["gold_doc"]]]],
            v2_text[q["metadata"]["gold_doc"]],
        )
        for q in v2
        if q["metadata"].get("unanswerable")
    ]
    # Off-topic: half of the train articles and half of the validation ones leave the index.
    rng = random.Random(0)
    absent: set[str] = set()
    for split in ("train", "validation"):
        titles = sorted(t for t, s in split_of.items() if s == split)
        rng.shuffle(titles)
        absent |= set(titles[: len(titles) // 2])
    offtopic = [dict(a, kind="offtopic") for a in answerable if a["article"] in absent]
    rng.shuffle(offtopic)
    offtopic = offtopic[: args.offtopic]
    if args.limit:
        answerable, adversarial, offtopic = (
            rng.sample(x, min(args.limit, len(x))) for x in (answerable, adversarial, offtopic)
        )

    settings = Settings(data_dir=args.out / "tune-index")
    tune_docs = {d.doc_id for d in docs if d.title in split_of}
    present_docs = {d.doc_id for d in docs if d.title in split_of and d.title not in absent}
    print("copying the tuning articles' index ...", file=sys.stderr)
    copy_store(args.store, args.out / "tune-index", tune_docs, settings)
    copy_store(args.store, args.out / "half-index", present_docs, settings)

    full = build_service(settings)
    half = build_service(settings.model_copy(update={"data_dir": args.out / "half-index"}))
    Items = list[dict[str, Any]]
    runs: list[tuple[str, Items, Items, Items]] = []
    if not (args.only_paraphrase or args.only_introductions or args.only_articles):
        runs.append(("examples.pkl", answerable, adversarial, offtopic))
    articles = args.articles or args.only_articles
    if args.paraphrase or args.only_paraphrase or articles:
        texts = [d.text for d in docs if d.title in split_of] + [q["question"] for q in answerable + adversarial]
        rephrase = paraphraser(full, texts)  # a seeded generator: each list rephrased once, in this order
        rephrased = [rephrase(answerable), rephrase(adversarial), rephrase(offtopic)]
    if args.paraphrase or args.only_paraphrase:
        runs.append(("examples-para.pkl", *rephrased))
    if args.introductions or args.only_introductions or articles:
        intros = [
            {
                "qid": f"intro:{it['article']}:{it['answer']}",
                "question": it["question"],
                "article": it["article"],
                "split": split_of[it["article"]],
                "kind": "answerable",
                "answers": [it["answer"]],
                "passage": it["passage"],
            }
            for it in introductions((d.title, d.text) for d in docs if d.title in split_of)
        ]
        intro_offtopic = [dict(it, kind="offtopic") for it in intros if it["article"] in absent]
    if args.introductions or args.only_introductions:
        runs.append(("examples-intro.pkl", intros, [], intro_offtopic))
    if articles:
        asked = answerable + rephrased[0] + intros + adversarial + rephrased[1]
        paragraphs = {t: [d.text for d in docs if d.title == t] for t in split_of}
        dump(
            article_examples(full, paragraphs, split_of, asked, args.out / "article-index"),
            args.out / "examples-article.pkl",
        )
    for name, on_topic, adversarial_items, offtopic_items in runs:
        examples: list[Example] = []
        for kind, items in (("answerable", on_topic), ("adversarial", adversarial_items)):
            print(f"{kind}: {len(items)} questions", file=sys.stderr)
            examples += collect(full, items, top_k=settings.top_k)
        print(f"offtopic: {len(offtopic_items)} questions", file=sys.stderr)
        examples += collect(half, offtopic_items, top_k=settings.top_k)
        dump(examples, args.out / name)


def article_examples(
    service: RAGService,
    paragraphs: dict[str, list[str]],
    split_of: dict[str, str],
    asked: list[dict[str, Any]],
    workdir: Path,
    offtopic_share: float = 0.25,
) -> list[Example]:
    """Each tuning article indexed alone as one document (its paragraphs joined by blank lines, chunked as `rag index`
    chunks a user's file), asked its own ``asked`` items and, as off-topic, a sample of the same split's other
    articles' answerable ones: the shape of a user's collection of one report, where every retrieved chunk is from
    the same text and scores are set by chunk length, not by SQuAD's paragraphs. Marked corpus "article"."""
    from index.pipeline import IndexReport, build_indexer
    from rag.types import Document

    rng = random.Random(2)
    out: list[Example] = []
    for title in sorted(paragraphs):
        settings = Settings(data_dir=workdir / "".join(c if c.isalnum() else "_" for c in title))
        if not (settings.data_dir / "chroma").exists():
            indexer = build_indexer(settings, store=open_store(settings), embedder=service.embedder)
            text = "\n\n".join(paragraphs[title])
            document = Document.from_text(doc_id="article", source=f"{title}.txt", text=text, title=title)
            indexer.put_changed([document], report=IndexReport())
        own = [dict(it, corpus="article") for it in asked if it["article"] == title]
        others = [
            it
            for it in asked
            if it["article"] != title and it["kind"] == "answerable" and split_of[it["article"]] == split_of[title]
        ]
        n_off = int(len(own) * offtopic_share)
        offtopic = [
            dict(it, kind="offtopic", article=title, qid=f"{it['qid']}@{title}", corpus="article")
            for it in rng.sample(others, min(n_off, len(others)))
        ]
        article = build_service(settings, embedder=service.embedder)
        items = [{k: v for k, v in it.items() if k != "passage"} for it in own + offtopic]
        out += collect(article, items, top_k=settings.top_k)
        print(f"  {title}: {len(items)} questions", file=sys.stderr)
    return out


def paraphraser(service: RAGService, texts: list[str]) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Items -> their rule-made rephrasings (benchmarks/paraphrase.py), those that changed, qid suffixed ":para"."""
    from benchmarks.paraphrase import Paraphraser

    vocabulary = Paraphraser.vocabulary_of(texts)
    vectors = np.concatenate([service.embedder.embed(vocabulary[i : i + 256]) for i in range(0, len(vocabulary), 256)])
    model = Paraphraser(vocabulary, vectors)

    def rephrase(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for it in items:
            text = model.rephrase(it["question"], it["passage"])
            if text is not None:
                out.append(dict(it, qid=f"{it['qid']}:para", question=text))
        return out

    return rephrase


def dump(examples: list[Example], path: Path) -> None:
    for example in examples:  # what the features need, not the embeddings
        for passage in example.featurized.passages:
            passage.sentence_vectors = None
    with path.open("wb") as f:
        pickle.dump(examples, f)
    print(f"wrote {len(examples)} examples to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
