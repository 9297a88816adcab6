"""Fit the extractive answerer's sentence scorer and confidence model (rag/answering/answer_weights.py).

Reads the examples written by benchmarks/answerer_data.py (SQuAD's tuning articles only), fits on the train
articles, chooses everything that is chosen (model form, the extra-sentence ratio, the confidence operating point)
on the validation articles, and prints the validation figures. Nothing here reads the report half.

With --pool (make train-answerer), the confidence is fitted on every population answerer_data.py writes (SQuAD's
wording, rephrased, "Who is X?", single-article indexes, SciFact's train claims), each weighing the same, its form
(logistic, or one tanh layer) chosen by validation log loss and its operating point by balanced accuracy averaged
over the validation articles' populations.

    python benchmarks/train_answerer.py --data /tmp/answerer-data --pool [--write]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.answerer_data import Example  # noqa: E402,F401  (unpickling needs it)
from rag.answering.extractive import MAX_SENTENCES, answer_sentences  # noqa: E402
from rag.answering.features import ANSWER_FEATURES, SENTENCE_FEATURES  # noqa: E402
from rag.answering.scoring import READER_FEATURES, combine, read_candidates, reader_features  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "rag" / "answering" / "answer_weights.py"
READER_WEIGHTS = ROOT / "rag" / "answering" / "reader_weights.npz"
SEED = 0


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    return mean, scale


def fit_scorer(examples: list[Example], *, hidden: int, epochs: int = 400, l2: float = 1e-4) -> dict[str, Any]:
    """A listwise (softmax over each question's candidates) linear or one-hidden-layer scorer."""
    import torch

    torch.manual_seed(SEED)
    usable = [e for e in examples if e.labels.sum() > 0]
    mean, scale = standardise(np.concatenate([e.featurized.features for e in usable]))
    width = max(len(e.labels) for e in usable)
    x = np.zeros((len(usable), width, len(SENTENCE_FEATURES)), dtype=np.float32)
    y = np.zeros((len(usable), width), dtype=bool)
    valid = np.zeros((len(usable), width), dtype=bool)
    for i, e in enumerate(usable):
        n = len(e.labels)
        x[i, :n] = (e.featurized.features - mean) / scale
        y[i, :n] = e.labels > 0
        valid[i, :n] = True
    xt, yt, vt = torch.tensor(x), torch.tensor(y), torch.tensor(valid)
    f = len(SENTENCE_FEATURES)
    if hidden:
        w1 = torch.nn.Parameter(torch.randn(f, hidden) * 0.1)
        b1 = torch.nn.Parameter(torch.zeros(hidden))
        w2 = torch.nn.Parameter(torch.randn(hidden) * 0.1)
        params = [w1, b1, w2]

        def score(z: Any) -> Any:
            return torch.tanh(z @ w1 + b1) @ w2
    else:
        w = torch.nn.Parameter(torch.zeros(f))
        params = [w]

        def score(z: Any) -> Any:
            return z @ w

    opt = torch.optim.Adam(params, lr=0.02)
    for _ in range(epochs):
        opt.zero_grad()
        logits = score(xt).masked_fill(~vt, -1e9)
        loss = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~yt, -1e9), 1)).mean()
        loss = loss + l2 * sum((p**2).sum() for p in params)
        loss.backward()
        opt.step()
    if hidden:
        return tanh_spec(mean, scale, w1, b1, w2, 0.0)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "weights": w.detach().numpy().tolist(), "bias": 0.0}


def choose_ratio(ratios: dict[float, tuple[float, float]]) -> float:
    """A second sentence must earn its place: walking down from the strictest ratio, stop before the first step whose
    added sentences rescue the answer less than one time in five (containment gained / sentences added < 0.2).

    Known weakness (README, "Answering"): one noisy step decides it. On branch answer-soft-cover's data it stopped at
    0.9 (that step rescued 0.15 a time) although the extra sentences of 0.4, taken together, rescue 0.205 a time; a
    rule on the cumulative gain is on that branch. Kept here because the committed weights were chosen by this one."""
    keys = sorted(ratios, reverse=True)
    ratio = keys[0]
    for hi, lo in zip(keys[:-1], keys[1:], strict=True):
        gain = ratios[lo][0] - ratios[hi][0]
        cost = ratios[lo][1] - ratios[hi][1]
        if cost <= 0 or gain / cost < 0.2:
            break
        ratio = lo
    return ratio


def logits_of(spec: dict[str, Any], features: np.ndarray) -> np.ndarray:
    from rag.answering.scoring import Layer

    return Layer.from_dict(spec)(features) if len(features) else np.zeros(0, dtype=np.float32)


def containment_at(
    examples: list[Example], spec: dict[str, Any], ratio: float, most: int, combined: list[np.ndarray] | None = None
) -> tuple[float, float]:
    """Share of answerable questions whose chosen sentences hold an answer, and mean sentences chosen (``combined``:
    each example's logits with the reader, instead of the scorer's)."""
    hits, chosen = 0.0, 0
    for k, e in enumerate(examples):
        logits = logits_of(spec, e.featurized.features) if combined is None else combined[k]
        if not len(logits):
            continue
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-logits, kind="stable")
        picked = [order[0]] + [i for i in order[1:most] if p[i] >= ratio * p[order[0]]]
        hits += float(e.labels[picked].max())
        chosen += len(picked)
    n = max(len(examples), 1)
    return hits / n, chosen / n


def answer_rows(examples: list[Example], spec: dict[str, Any], ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """ANSWER_FEATURES rows and labels (1: answerable and the answer, as the service gives it at this extra-sentence
    ``ratio``, cites a sentence that holds an answer)."""
    rows, labels = [], []
    for e in examples:
        logits = logits_of(spec, e.featurized.features)
        if not len(logits):
            rows.append(np.zeros(len(ANSWER_FEATURES), dtype=np.float32))
            labels.append(0.0)
            continue
        rows.append(e.featurized.answer_row(logits))
        labels.append(answer_label(e, logits, ratio))
    return np.stack(rows), np.array(labels)


def answer_label(example: Example, logits: np.ndarray, ratio: float) -> float:
    """1.0 when the question is answerable and one of the sentences its answer cites holds an answer: what the
    confidence estimates, for the answer the user is given (which may cite a second sentence, a "why"'s reason or a
    pronoun's antecedent), not for the best sentence alone."""
    if example.kind != "answerable":
        return 0.0
    cited = answer_sentences(example.featurized, logits, ratio, MAX_SENTENCES)
    return 1.0 if example.labels[cited].max() > 0 else 0.0


def fit_confidence(x: np.ndarray, y: np.ndarray, c: float, weight: np.ndarray | None = None) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = standardise(x)
    model = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y, sample_weight=weight)
    return {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": model.coef_[0].tolist(),
        "bias": float(model.intercept_[0]),
    }


def probabilities(spec: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits_of(spec, x)))


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (p >= lo) & ((p < hi) | (hi == 1.0))
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(total)


def refusal_at(p: np.ndarray, unanswerable: np.ndarray, threshold: float) -> dict[str, float]:
    refused = p < threshold
    tp = float((refused & unanswerable).sum())
    precision = tp / refused.sum() if refused.sum() else 1.0
    recall = tp / unanswerable.sum() if unanswerable.sum() else 0.0
    answered_rate = float((~refused & ~unanswerable).sum() / max((~unanswerable).sum(), 1))
    return {
        "threshold": round(float(threshold), 3),
        "refusal_precision": round(precision, 4),
        "refusal_recall": round(recall, 4),
        "answerable_answered": round(answered_rate, 4),
        "balanced_accuracy": round((recall + answered_rate) / 2, 4),
    }


def auc(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/answerer-data"))
    parser.add_argument("--write", action="store_true", help="rewrite rag/answering/answer_weights.py with the fit")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "answerer.json")
    parser.add_argument("--reader", type=Path, default=READER_WEIGHTS, help="the reader's weights (train_reader.py)")
    parser.add_argument("--candidates", type=int, default=3, help="sentences the reader reads per question")
    parser.add_argument(
        "--scifact",
        action="store_true",
        help="also fit and validate on examples-scifact.pkl (answerer_data.py --scifact-store); not the default: "
        "it did not help (README, Answering). Without it, that file's validation claims are only reported",
    )
    parser.add_argument(
        "--paraphrases",
        action="store_true",
        help="also fit and validate on examples-para.pkl (answerer_data.py --paraphrase: the same questions "
        "rephrased by benchmarks/paraphrase.py). Without it, that file's validation questions are only reported",
    )
    parser.add_argument(
        "--introductions",
        action="store_true",
        help="also fit and validate on examples-intro.pkl (answerer_data.py --introductions: rule-made 'Who is X?' "
        "questions). Without it, that file's validation questions are only reported",
    )
    parser.add_argument(
        "--pool",
        action="store_true",
        help="fit the confidence on every population's questions pooled (SQuAD's wording, rephrased, 'Who is X?', "
        "examples-article.pkl's single-article indexes, SciFact's claims), each population weighing the same; "
        "without it, on SQuAD's wording alone (and what --scifact/--paraphrases/--introductions add)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="an earlier answer_weights.py: report its confidence (at its own operating point) on the same "
        "validation questions, by population, beside this fit's (its answer features must be named among ours)",
    )
    args = parser.parse_args()
    extra: list[Example]
    pool: list[Example] = []  # other populations' questions, for the confidence only (--pool)
    if args.pool:
        for name, corpus in (
            ("examples-para.pkl", "rephrased"),
            ("examples-intro.pkl", "introductions"),
            ("examples-article.pkl", "article"),
            ("examples-scifact.pkl", "scifact"),
        ):
            with (args.data / name).open("rb") as f:
                extra = pickle.load(f)
            for e in extra:
                e.corpus = corpus
            pool += extra
    with (args.data / "examples.pkl").open("rb") as f:
        examples: list[Example] = pickle.load(f)
    unseen: list[Example] = []  # validation questions of a kind the fit never sees, reported by corpus
    for name, used, corpus in (
        ("examples-scifact.pkl", args.scifact, None),
        ("examples-para.pkl", args.paraphrases, "rephrased"),
        ("examples-intro.pkl", args.introductions, "introductions"),
    ):
        if not (args.data / name).is_file() or (args.pool and not used):
            continue  # with --pool, the file was read above and is fitted on, not only reported
        with (args.data / name).open("rb") as f:
            extra = pickle.load(f)
        for e in extra:
            e.corpus = corpus or corpus_of(e)
        if used:
            examples += extra
        else:
            unseen += [e for e in extra if e.split == "validation"]
    train = [e for e in examples if e.split == "train"]
    val = [e for e in examples if e.split == "validation"]
    train_ans = [e for e in train if e.kind == "answerable"]
    val_ans = [e for e in val if e.kind == "answerable"]
    print(f"train {len(train)} ({len(train_ans)} answerable), validation {len(val)} ({len(val_ans)})")

    report: dict[str, Any] = {"scorers": {}}
    best_spec, best_name, best_c1 = None, "", -1.0
    for name, hidden in (("linear", 0), ("mlp16", 16)):
        spec = fit_scorer(train_ans, hidden=hidden)
        c1, _ = containment_at(val_ans, spec, ratio=2.0, most=1)
        report["scorers"][name] = {"validation_containment_1": round(c1, 4)}
        print(f"scorer {name}: validation containment@1 {c1:.4f}")
        if c1 > best_c1 + 0.005 or best_spec is None:  # the simpler model unless the larger one clearly wins
            best_spec, best_name, best_c1 = spec, name, c1
    assert best_spec is not None
    report["scorer"] = best_name

    ratios = {}
    for ratio in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        c2, mean_n = containment_at(val_ans, best_spec, ratio=ratio, most=2)
        ratios[ratio] = (c2, mean_n)
        print(f"ratio {ratio}: containment@<=2 {c2:.4f}, {mean_n:.2f} sentences")
    ratio = choose_ratio(ratios)
    report["extra_sentence_ratio"] = {"chosen": ratio, "curve": {str(k): v for k, v in ratios.items()}}

    # The confidence: fitted on the train articles' questions of every population, each population weighing the
    # same; its form chosen by validation log loss, its operating point by balanced accuracy averaged over the
    # validation articles' populations.
    val_pool = [e for e in pool if e.split == "validation"]
    fit_on = train + [e for e in pool if e.split == "train"]
    x_train, y_train = answer_rows(fit_on, best_spec, ratio)
    val_own, val = val, val + val_pool
    x_val, y_val = answer_rows(val, best_spec, ratio)
    w_train, w_val = population_weights(fit_on), population_weights(val)
    best_conf, best_loss = None, 9.0
    for name, fitter in confidence_candidates().items():
        spec = fitter(x_train, y_train, w_train)
        p = probabilities(spec, x_val)
        loss = log_loss(p, y_val, w_val)
        print(
            f"confidence {name}: validation log loss {loss:.4f}, ECE {calibration_error(p, y_val):.4f}, AUC {auc(p, y_val):.4f}"
        )
        if loss < best_loss:
            best_conf, best_loss, report["confidence_model"] = spec, loss, name
    assert best_conf is not None
    p_val = probabilities(best_conf, x_val)
    best_ece = calibration_error(p_val, y_val)
    unanswerable = np.array([e.kind != "answerable" for e in val])
    group = np.array([population(e) for e in val])
    curve, point = operating_curve(p_val, unanswerable, group)
    # SQuAD's answerable + adversarial questions: the SQuAD 2.0 setting; its answerable + off-topic ones.
    adversarial = np.array([corpus_of(e) == "squad" and e.kind != "offtopic" for e in val])
    no_adv = np.array([corpus_of(e) == "squad" and e.kind != "adversarial" for e in val])
    squad = adversarial | no_adv
    report.update(
        confidence={
            "validation_ece": round(best_ece, 4),
            "validation_auc": round(auc(p_val, y_val), 4),
            "squad_ece": round(calibration_error(p_val[squad], y_val[squad]), 4),
            "squad_auc": round(auc(p_val[squad], y_val[squad]), 4),
        },
        operating_point=point,
        squad2_at_point=refusal_at(p_val[adversarial], unanswerable[adversarial], point["threshold"]),
        offtopic_at_point=refusal_at(p_val[no_adv], unanswerable[no_adv], point["threshold"]),
        tradeoff=curve,
    )
    report["tradeoff_squad2"] = [
        refusal_at(p_val[adversarial], unanswerable[adversarial], r["threshold"]) for r in curve
    ]
    report["by_corpus"] = by_corpus(val, best_spec, p_val, y_val, point["threshold"])
    report["by_population"] = by_population(val, p_val, y_val, point["threshold"])
    if args.compare is not None:  # an earlier answer_weights.py's confidence, on the same questions
        report["compared"] = compare(args.compare, val, x_val, y_val, w_val)
    if unseen:  # reported, never used to choose
        x_unseen, y_unseen = answer_rows(unseen, best_spec, ratio)
        p_unseen = probabilities(best_conf, x_unseen)
        report["unseen_corpus"] = by_corpus(unseen, best_spec, p_unseen, y_unseen, point["threshold"])
    report["tradeoff_offtopic"] = [refusal_at(p_val[no_adv], unanswerable[no_adv], r["threshold"]) for r in curve]
    plot_tradeoff(report, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("tradeoff")}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    reader_use = None
    if args.reader is not None and args.reader.is_file():
        reader_use, reader_report = fit_reader_use(
            val_own, best_spec, args.reader, args.data, candidates=args.candidates, pool=val_pool
        )
        report["reader"] = reader_report
        print(json.dumps({k: v for k, v in reader_report.items() if not k.startswith("tradeoff")}, indent=1))
        args.out.write_text(json.dumps(report, indent=1))
    if args.write:
        write_weights(best_spec, best_conf, ratio=ratio, threshold=point["threshold"], reader=reader_use)
        print(f"wrote {WEIGHTS}")


def corpus_of(example: Example) -> str:
    return getattr(example, "corpus", "squad")  # examples written before SciFact was added are SQuAD's


def by_corpus(
    val: list[Example], spec: dict[str, Any], p: np.ndarray, y: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Validation figures of each corpus apart: sentence choice, calibration, refusals at ``threshold``."""
    out: dict[str, Any] = {}
    for name in sorted({corpus_of(e) for e in val}):
        mask = np.array([corpus_of(e) == name for e in val])
        answerable = [e for e in val if corpus_of(e) == name and e.kind == "answerable"]
        unanswerable = np.array([e.kind != "answerable" for e in val])[mask]
        out[name] = {
            "questions": int(mask.sum()),
            "answerable": len(answerable),
            "containment_1": round(containment_at(answerable, spec, 2.0, 1)[0], 4),
            "ece": round(calibration_error(p[mask], y[mask]), 4),
            "auc": round(auc(p[mask], y[mask]), 4),
            "at_point": refusal_at(p[mask], unanswerable, threshold),
        }
        print(f"{name}: {out[name]}")
    return out


def by_population(val: list[Example], p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Calibration, ranking and what is answered or refused at ``threshold``, for each population apart, and the
    pooled log loss (populations weighing the same)."""
    group = np.array([population(e) for e in val])
    unanswerable = np.array([e.kind != "answerable" for e in val])
    out: dict[str, Any] = {
        "log_loss": round(log_loss(p, y, population_weights(val)), 4),
        "balanced_accuracy": refusal_by_population(p, unanswerable, group, threshold)["balanced_accuracy"],
    }
    for g in sorted(set(group)):
        m = group == g
        answerable, refused = m & ~unanswerable, m & unanswerable
        out[g] = {
            "questions": int(m.sum()),
            "auc": round(auc(p[m], y[m]), 4),
            "ece": round(calibration_error(p[m], y[m]), 4),
            "answered": round(float((p[answerable] >= threshold).mean()), 4) if answerable.any() else None,
            "answered_and_right": (
                round(float(((p[answerable] >= threshold) & (y[answerable] > 0)).mean()), 4)
                if answerable.any()
                else None
            ),
            "refused": round(float((p[refused] < threshold).mean()), 4) if refused.any() else None,
        }
    return out


def compare(path: Path, val: list[Example], x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> dict[str, Any]:
    """by_population for the confidence of an earlier answer_weights.py (read as a module, not imported)."""
    import runpy

    earlier = runpy.run_path(str(path))
    gone = [name for name in earlier["ANSWER_FEATURES"] if name not in ANSWER_FEATURES]
    if gone:
        raise SystemExit(f"--compare {path}: it reads answer features this code no longer computes: {gone}")
    columns = [list(ANSWER_FEATURES).index(name) for name in earlier["ANSWER_FEATURES"]]
    p = probabilities(earlier["CONFIDENCE_MODEL"], x[:, columns])
    out = {"weights": str(path), "threshold": earlier["MIN_CONFIDENCE"]}
    out.update(by_population(val, p, y, earlier["MIN_CONFIDENCE"]))
    print(f"compared ({path}): {json.dumps(out)}")
    return out


def reader_logits(
    examples: list[Example], spec: dict[str, Any], weights: Path, cache_dir: Path, *, candidates: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each example's read candidates (indices) and the reader's logits for them; cached by the weights' hash, the
    scorer (which chooses what is read) and the questions."""
    import hashlib

    from rag.answering.reader import Reader

    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    asked = hashlib.sha256(json.dumps([rounded(spec), [e.qid for e in examples]]).encode()).hexdigest()[:12]
    cache = cache_dir / f"reader-{digest}-{candidates}-{len(examples)}-{asked}.pkl"
    if cache.is_file():
        with cache.open("rb") as f:
            cached: list[tuple[np.ndarray, np.ndarray]] = pickle.load(f)
            return cached
    reader = Reader(weights)
    out = []
    for e in examples:
        logits = logits_of(spec, e.featurized.features)
        read = read_candidates(logits, candidates) if len(logits) else np.zeros(0, dtype=np.int64)
        out.append((read, reader.logits(e.question, [e.featurized.sentences[i].text for i in read])))
    with cache.open("wb") as f:
        pickle.dump(out, f)
    return out


def fit_reader_use(
    val: list[Example],
    spec: dict[str, Any],
    weights: Path,
    cache_dir: Path,
    *,
    candidates: int,
    pool: list[Example] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """How the reader joins the scorer, fitted on the validation articles (the reader was fitted on the train ones,
    so its logits there are in-sample).

    One scalar (the reader's weight) and the extra-sentence ratio are chosen on validation containment (SQuAD's
    wording). The confidence is fitted on those questions and ``pool`` (the same articles' other populations), every
    population weighing the same; each candidate form (confidence_candidates) is fitted leave-one-article-out over
    the validation articles, so every figure reported is out-of-fold (from an article that neither the reader nor
    that fold's confidence saw), and the form with the lowest out-of-fold log loss is refitted on all of them. The
    operating point maximises balanced accuracy averaged over the populations (refusal_by_population).
    """
    pool = pool or []
    read = reader_logits(val, spec, weights, cache_dir, candidates=candidates)
    answerable = [i for i, e in enumerate(val) if e.kind == "answerable"]
    base = [logits_of(spec, e.featurized.features) for e in val]

    def combined_all(weight: float) -> list[np.ndarray]:
        return [combine(b, r, said, weight) if len(b) else b for b, (r, said) in zip(base, read, strict=True)]

    curve_w = {}
    for weight in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0):
        c = combined_all(weight)
        curve_w[weight] = containment_at([val[i] for i in answerable], spec, 2.0, 1, [c[i] for i in answerable])[0]
        print(f"reader weight {weight}: validation containment@1 {curve_w[weight]:.4f}")
    weight = max(curve_w, key=lambda w: (round(curve_w[w], 3), -w))
    combined = combined_all(weight)
    ratios = {}
    for ratio in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        ratios[ratio] = containment_at([val[i] for i in answerable], spec, ratio, 2, [combined[i] for i in answerable])
    ratio = choose_ratio(ratios)

    # The confidence: fitted on the validation questions and ``pool`` (other populations' validation questions).
    everything = val + list(pool)
    read_all = read + (reader_logits(list(pool), spec, weights, cache_dir, candidates=candidates) if pool else [])
    base_all = base + [logits_of(spec, e.featurized.features) for e in pool]
    rows, labels = [], []
    for e, b, (r, said) in zip(everything, base_all, read_all, strict=True):
        if not len(b):
            rows.append(np.zeros(len(ANSWER_FEATURES) + len(READER_FEATURES), dtype=np.float32))
            labels.append(0.0)
            continue
        joined = combine(b, r, said, weight)
        rows.append(np.concatenate([e.featurized.answer_row(b), reader_features(joined, r, said)]))
        labels.append(answer_label(e, joined, ratio))
    x, y = np.stack(rows), np.array(labels)
    article = np.array([e.article for e in everything])
    group = np.array([population(e) for e in everything])
    unanswerable = np.array([e.kind != "answerable" for e in everything])
    # Every population weighs the same, so that the many SQuAD-worded questions do not decide alone.
    sample_weight = population_weights(everything)
    best: tuple[float, str, np.ndarray] | None = None
    for name, fitter in confidence_candidates().items():
        p = np.zeros(len(y))
        for held in sorted(set(article)):
            out = article == held
            fold = fitter(x[~out], y[~out], sample_weight[~out])
            p[out] = probabilities(fold, x[out])
        loss = log_loss(p, y, sample_weight)
        print(f"reader confidence {name}: out-of-fold log loss {loss:.4f}, ECE {calibration_error(p, y):.4f}")
        if best is None or loss < best[0]:
            best = (loss, name, p)
    assert best is not None
    loss, chosen_name, p = best
    _, point = operating_curve(p, unanswerable, group)
    squad = group == "squad"
    adversarial = squad & np.array([e.kind != "offtopic" for e in everything])
    no_adv = squad & np.array([e.kind != "adversarial" for e in everything])
    answered_right = (p >= point["threshold"]) & (y > 0)
    use = {
        "candidates": candidates,
        "weight": weight,
        "confidence": confidence_candidates()[chosen_name](x, y, sample_weight),
        "extra_sentence_ratio": ratio,
        "min_confidence": point["threshold"],
    }
    report = {
        "weight_curve": {str(k): round(v, 4) for k, v in curve_w.items()},
        "weight": weight,
        "extra_sentence_ratio": {"chosen": ratio, "curve": {str(k): v for k, v in ratios.items()}},
        "containment_1": round(curve_w[weight], 4),
        "containment_1_without_reader": round(curve_w[0.0], 4),
        "confidence": {
            "model": chosen_name,
            "out_of_fold_log_loss": round(loss, 4),
            "out_of_fold_ece": round(calibration_error(p[squad], y[squad]), 4),
            "out_of_fold_auc": round(auc(p[squad], y[squad]), 4),
        },
        "operating_point": point,
        "answerable_answered_and_right": round(float(answered_right[squad & ~unanswerable].mean()), 4),
        "squad2_at_point": refusal_at(p[adversarial], unanswerable[adversarial], point["threshold"]),
        "offtopic_at_point": refusal_at(p[no_adv], unanswerable[no_adv], point["threshold"]),
        "by_population": by_population(everything, p, y, point["threshold"]),
        "tradeoff_squad2": [
            refusal_at(p[adversarial], unanswerable[adversarial], t) for t in np.linspace(0.02, 0.98, 49)
        ],
    }
    return use, report


def population(example: Example) -> str:
    """Which population a validation question belongs to, for weighing and reporting: its wording (SQuAD's own,
    rephrased, "Who is X?") and its index (the 24 articles' paragraphs, or one article as one chunked document, where
    other articles' questions are their own population)."""
    qid = example.qid
    if corpus_of(example) == "scifact":
        return "scifact"
    wording = (
        "rephrased" if qid.split("@")[0].endswith(":para") else "introductions" if qid.startswith("intro:") else "squad"
    )
    if corpus_of(example) != "article":
        return wording
    return "article offtopic" if example.kind == "offtopic" else f"article {wording}"


def population_weights(examples: list[Example]) -> np.ndarray:
    """Per-question weights under which every population weighs the same (mean weight 1)."""
    group = np.array([population(e) for e in examples])
    weight = np.ones(len(examples))
    for g in set(group):
        weight[group == g] = len(examples) / (len(set(group)) * (group == g).sum())
    return weight


def log_loss(p: np.ndarray, y: np.ndarray, weight: np.ndarray) -> float:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-(weight * (y * np.log(q) + (1 - y) * np.log(1 - q))).sum() / weight.sum())


def refusal_by_population(
    p: np.ndarray, unanswerable: np.ndarray, group: np.ndarray, threshold: float
) -> dict[str, float]:
    """refusal_at over all questions, with balanced_accuracy replaced by its mean over the populations (each
    population's share of answerable questions answered and of unanswerable ones refused, averaged)."""
    out = refusal_at(p, unanswerable, threshold)
    rates = []
    for g in sorted(set(group)):
        m = group == g
        if (m & ~unanswerable).any():
            rates.append(float((p[m & ~unanswerable] >= threshold).mean()))
        if (m & unanswerable).any():
            rates.append(float((p[m & unanswerable] < threshold).mean()))
    out["balanced_accuracy"] = round(float(np.mean(rates)), 4)
    return out


def operating_curve(
    p: np.ndarray, unanswerable: np.ndarray, group: np.ndarray
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """refusal_by_population at thresholds 0.05, 0.10, ..., 0.95, and the one with the best population-averaged
    balanced accuracy (the operating point)."""
    curve = [refusal_by_population(p, unanswerable, group, t) for t in np.linspace(0.05, 0.95, 19)]
    return curve, max(curve, key=lambda r: r["balanced_accuracy"])


def confidence_candidates() -> dict[str, Any]:
    """The forms the confidence may take: (x, y, sample weight) -> a Layer spec."""
    return {
        **{f"logistic C={c}": (lambda x, y, w, c=c: fit_confidence(x, y, c, w)) for c in (0.01, 0.1, 1.0)},
        **{
            f"tanh {h}, L2 {l2}": (lambda x, y, w, h=h, l2=l2: fit_confidence_mlp(x, y, w, hidden=h, l2=l2))
            for h, l2 in ((8, 1e-3), (8, 1e-2), (16, 1e-3))
        },
    }


def fit_confidence_mlp(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, *, hidden: int, l2: float, epochs: int = 500
) -> dict[str, Any]:
    """A logistic output over one tanh layer, full batch (weighted binary cross-entropy + L2)."""
    import torch

    torch.manual_seed(SEED)
    mean, scale = standardise(x)
    z = torch.tensor((x - mean) / scale, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    wt = torch.tensor(w / w.mean(), dtype=torch.float32)
    w1 = torch.nn.Parameter(torch.randn(x.shape[1], hidden) * 0.1)
    b1 = torch.nn.Parameter(torch.zeros(hidden))
    w2 = torch.nn.Parameter(torch.randn(hidden) * 0.1)
    b2 = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=0.02)
    for _ in range(epochs):
        opt.zero_grad()
        logit = torch.tanh(z @ w1 + b1) @ w2 + b2
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, yt, reduction="none")
        loss = (wt * bce).mean() + l2 * ((w1**2).sum() + (w2**2).sum())
        loss.backward()
        opt.step()
    return tanh_spec(mean, scale, w1, b1, w2, float(b2.detach()))


def tanh_spec(mean: np.ndarray, scale: np.ndarray, w1: Any, b1: Any, w2: Any, out_bias: float) -> dict[str, Any]:
    """A one-tanh-layer model as rag.answering.scoring.Layer reads it (w1, b1, w2: torch parameters)."""
    return {
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "weights": w1.detach().numpy().tolist(),
        "bias": b1.detach().numpy().tolist(),
        "out_weights": w2.detach().numpy().tolist(),
        "out_bias": out_bias,
    }


def plot_tradeoff(report: dict[str, Any], path: Path) -> None:
    """Refusal precision and recall (SQuAD 2.0 adversarial, off-topic) and answered share vs the operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("tradeoff_squad2", "SQuAD 2.0 unanswerable"), ("tradeoff_offtopic", "off-topic")):
        rows = report[key]
        t = [r["threshold"] for r in rows]
        ax.plot(t, [r["refusal_precision"] for r in rows], label=f"refusal precision, {label}")
        ax.plot(t, [r["refusal_recall"] for r in rows], "--", label=f"refusal recall, {label}")
    rows = report["tradeoff"]
    ax.plot([r["threshold"] for r in rows], [r["answerable_answered"] for r in rows], "k:", label="answerable answered")
    ax.axvline(report["operating_point"]["threshold"], color="grey", lw=0.8)
    ax.set_xlabel("RAG_MIN_CONFIDENCE (validation articles)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rounded(spec: dict[str, Any]) -> dict[str, Any]:
    """A fitted spec as it is written (5 decimals)."""
    return json.loads(json.dumps(spec), parse_float=lambda s: round(float(s), 5))


def write_weights(
    sentence: dict[str, Any],
    confidence: dict[str, Any],
    *,
    ratio: float,
    threshold: float,
    reader: dict[str, Any] | None = None,
) -> None:
    WEIGHTS.write_text(
        '"""Fitted by benchmarks/train_answerer.py (make train-answerer) on SQuAD\'s tuning articles; do not edit."""\n\n'
        f"SENTENCE_FEATURES = {list(SENTENCE_FEATURES)!r}\n"
        f"ANSWER_FEATURES = {list(ANSWER_FEATURES)!r}\n"
        f"SENTENCE_MODEL = {rounded(sentence)!r}\n"
        f"CONFIDENCE_MODEL = {rounded(confidence)!r}\n"
        f"EXTRA_SENTENCE_RATIO = {float(ratio)!r}\n"
        f"MIN_CONFIDENCE = {float(threshold)!r}\n"
        f"READER_FEATURES = {list(READER_FEATURES)!r}\n"
        f"READER = {None if reader is None else rounded(reader)!r}\n",
        encoding="utf-8",
    )
    import subprocess

    # Written as the linter formats it, so that `make lint` passes after `make train-answerer`.
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(WEIGHTS)], check=False)


if __name__ == "__main__":
    main()
