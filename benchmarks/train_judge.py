"""Fit the support judge on SciFact and report its precision and recall on the test split.

Positives: each claim with each of its SUPPORT evidence sentences. Negatives: the same claim with every other
sentence of the same abstracts (the hard case: same topic, same words, not the evidence). CONTRADICT sentences are
left out of the fit (the issue asks for support against non-evidence) and reported separately: the judge is
lexical and cannot tell a contradiction from a support, and the figure says so.

    python benchmarks/train_judge.py                 # fit on train, report on test, print the figures
    python benchmarks/train_judge.py --write         # ... and rewrite rag/answering/judge_weights.py

Sentence numbers in SciFact's evidence index the original abstract's sentences; BEIR joined them with spaces and we
split them again with rag.text.sentence_spans. The two splits agree on most abstracts; abstracts where they
disagree in count are skipped (the script prints how many).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.answering.judge import FEATURES, features  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embedding import SentenceTransformerEmbedder  # noqa: E402
from rag.factory import build_embedder  # noqa: E402
from rag.text import sentence_spans  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "scifact"
WEIGHTS = ROOT / "rag" / "answering" / "judge_weights.py"


@dataclass
class Pairs:
    claims: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # 1 support, 0 other sentence, -1 contradict
    abstracts: list[tuple[str, str]] = field(default_factory=list)  # (claim id, doc id) of each pair


def load_pairs(data: Path, split: str) -> tuple[Pairs, int, int]:
    """Build the (claim, sentence, label) pairs of one split; also count abstracts used and skipped."""
    corpus = {}
    with (data / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            corpus[doc["_id"]] = doc["text"]
    pairs = Pairs()
    used = skipped = 0
    with (data / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            query = json.loads(line)
            if query["metadata"]["split"] != split:
                continue
            for doc_id, evidence in query["metadata"]["evidence"].items():
                support = {i for e in evidence if e["label"] == "SUPPORT" for i in e["sentences"]}
                contradict = {i for e in evidence if e["label"] == "CONTRADICT" for i in e["sentences"]}
                if not support and not contradict:
                    continue
                text = corpus[doc_id]
                spans = sentence_spans(text)
                if max(support | contradict) >= len(spans):
                    skipped += 1
                    continue
                used += 1
                for i, (start, end) in enumerate(spans):
                    label = 1 if i in support else -1 if i in contradict else 0
                    pairs.claims.append(query["text"])
                    pairs.sentences.append(text[start:end])
                    pairs.labels.append(label)
                    pairs.abstracts.append((query["_id"], doc_id))
    return pairs, used, skipped


def feature_matrix(pairs: Pairs, embedder: SentenceTransformerEmbedder) -> np.ndarray:
    """One feature row per pair (the cosine from MiniLM, the rest lexical)."""
    unique_claims = sorted(set(pairs.claims))
    claim_vectors = dict(zip(unique_claims, embedder.embed(unique_claims), strict=True))
    sentence_vectors = embedder.embed(pairs.sentences)
    rows = []
    for claim, sentence, vector in zip(pairs.claims, pairs.sentences, sentence_vectors, strict=True):
        rows.append(features(claim, sentence, float(vector @ claim_vectors[claim])))
    return np.asarray(rows, dtype=np.float64)


def precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    predicted = scores >= threshold
    tp = float(np.sum(predicted & (labels == 1)))
    precision = tp / max(float(np.sum(predicted)), 1.0)
    recall = tp / max(float(np.sum(labels == 1)), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return precision, recall, f1


def abstract_recall(pairs: Pairs, scores: np.ndarray, threshold: float) -> float:
    """Share of (claim, supporting abstract) pairs whose best-scoring sentence passes and is a SUPPORT sentence."""
    best: dict[tuple[str, str], tuple[float, int]] = {}
    has_support: set[tuple[str, str]] = set()
    for key, score, label in zip(pairs.abstracts, scores, pairs.labels, strict=True):
        if label == 1:
            has_support.add(key)
        if key not in best or score > best[key][0]:
            best[key] = (float(score), label)
    hits = sum(1 for key in has_support if best[key][0] >= threshold and best[key][1] == 1)
    return hits / max(len(has_support), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder")
    parser.add_argument("--write", action="store_true", help="rewrite rag/answering/judge_weights.py with the fit")
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    embedder = build_embedder(Settings(device="cpu"))
    train, used, skipped = load_pairs(args.data, "train")
    test, used_test, skipped_test = load_pairs(args.data, "test")
    print(f"abstracts: train {used} used, {skipped} skipped; test {used_test} used, {skipped_test} skipped")
    x_train, x_test = feature_matrix(train, embedder), feature_matrix(test, embedder)
    y_train, y_test = np.asarray(train.labels), np.asarray(test.labels)
    fit_rows = y_train >= 0
    # The bias is a feature column; no separate intercept, so the stored vector is the whole model.
    model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000)
    model.fit(x_train[fit_rows], y_train[fit_rows])
    coefficients = [float(c) for c in model.coef_[0]]
    p_train = model.predict_proba(x_train)[:, 1]
    p_test = model.predict_proba(x_test)[:, 1]
    # Threshold: the best F1 on train (support vs other sentences), on a 0.01 grid.
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    f1s = [precision_recall(p_train[fit_rows], y_train[fit_rows], float(t))[2] for t in grid]
    threshold = float(grid[int(np.argmax(f1s))])
    print("coefficients:", dict(zip(FEATURES, np.round(coefficients, 4), strict=True)))
    print(f"threshold (best F1 on train): {threshold}")
    for name, p, y in (("train", p_train, y_train), ("test", p_test, y_test)):
        rows = y >= 0
        precision, recall, f1 = precision_recall(p[rows], y[rows], threshold)
        contradict = y == -1
        accepted = float(np.mean(p[contradict] >= threshold)) if contradict.any() else float("nan")
        print(
            f"{name}: support sentences {int(np.sum(y == 1))}, other sentences {int(np.sum(y == 0))}; "
            f"precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}; "
            f"abstract-level recall (best sentence is evidence and passes) {abstract_recall(train if name == 'train' else test, p, threshold):.3f}; "
            f"CONTRADICT sentences accepted {accepted:.3f}"
        )
    if args.write:
        WEIGHTS.write_text(
            '"""Support judge coefficients, written by benchmarks/train_judge.py --write (SciFact train). Do not edit."""\n\n'
            f"FEATURES = ({', '.join(json.dumps(f) for f in FEATURES)})\n"
            f"COEFFICIENTS = ({', '.join(f'{c:.6f}' for c in coefficients)})\n"
            f"THRESHOLD = {threshold}\n",
            encoding="utf-8",
        )
        print(f"wrote {WEIGHTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
