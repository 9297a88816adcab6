"""Score answers against a reference set: retrieval, answers, citations, refusals and latency.

Every metric is defined in the README ("Evaluation") with its formula; the functions below are those formulas.
The evaluator consumes the one Answer type, whatever produced it.
"""

from __future__ import annotations

import math
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.evaluation.calibration import calibration
from rag.evaluation.references import ReferenceItem
from rag.types import Answer

RANK_DEPTH = 100
# Without the answer's passages to count, gold counts as retrieved within the first RETRIEVAL_K distinct docs
# (the default RAG_TOP_K: the passages an answer reads).
RETRIEVAL_K = 5
# Why a question went wrong, or that it did not; every question gets exactly one (see classify()).
CORRECT = "correct"
RETRIEVAL_MISS = "retrieval_miss"
WRONG_SENTENCE = "wrong_sentence"
FALSE_REFUSAL = "false_refusal"
ANSWERED_UNANSWERABLE = "answered_unanswerable"
OUTCOMES = (CORRECT, RETRIEVAL_MISS, WRONG_SENTENCE, FALSE_REFUSAL, ANSWERED_UNANSWERABLE)
_MARKER = re.compile(r"\[(\d+)\]")
# An answer sentence: text up to and including its run of markers ("... [1] [2]").
_SEGMENT = re.compile(r"(.*?)((?:\s*\[\d+\])+)", re.S)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
# Typographic quotes and dashes folded to their ASCII forms before punctuation is removed, so that an answer
# quoted from a curly-quoted text ("1939–1945") and a plainly typed reference ("1939-1945") normalise alike.
_FOLD = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2039\u203a", "'"),  # ‘ ’ ‚ ‛ ′ ‹ ›
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),  # “ ” „ ‟ ″ « »
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),  # ‐ ‑ ‒ – — ― −
    }
)
# A possessive "'s" at the end of a word ("Alipio's" -> "Alipio"), after quotes are folded.
_POSSESSIVE = re.compile(r"(?<=\w)'s\b")


# --- retrieval --------------------------------------------------------------------------------------------------
def distinct_docs(doc_ids: Sequence[str]) -> list[str]:
    """Collapse a ranked list of chunk doc ids to distinct documents, keeping the first occurrence's rank."""
    return list(dict.fromkeys(doc_ids))


def hit_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 if a gold document is among the first k, else 0."""
    return 1.0 if any(d in gold for d in ranked[:k]) else 0.0


def mrr_at(ranked: Sequence[str], gold: set[str], k: int = 10) -> float:
    """1 / rank of the first gold document within the first k, else 0."""
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], relevance: dict[str, int], k: int = 10) -> float:
    """DCG@k / ideal DCG@k with gain rel_i and discount log2(i + 1) (BEIR's / trec_eval's definition)."""
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 1) for i, doc in enumerate(ranked[:k], start=1))
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 1) for i, rel in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], gold: set[str], k: int = 100) -> float:
    """Share of the gold documents found within the first k."""
    return len(gold & set(ranked[:k])) / len(gold) if gold else 0.0


# --- answers ----------------------------------------------------------------------------------------------------
def strip_markers(answer: str) -> str:
    """The answer text without its [n] citation markers."""
    return " ".join(_MARKER.sub(" ", answer).split())


def normalize_answer(text: str) -> str:
    """Normalise an answer for matching: SQuAD's normalisation, after folding typography and possessives.

    In order: lower case; Unicode quotes (‘ ’ ‚ ‛ ′ ‹ › and “ ” „ ‟ ″ « ») become ' and ", Unicode dashes and
    hyphens (‐ ‑ ‒ – — ― −) become -; a possessive 's at the end of a word is dropped ("Alipio's men" ->
    "alipio men"); then SQuAD's steps: no punctuation, no articles (a, an, the), single spaces. The folding
    departs from the official SQuAD script only for texts holding those characters or a possessive.
    """
    text = _POSSESSIVE.sub("", text.lower().translate(_FOLD))
    text = "".join(ch for ch in text if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1 if the normalised prediction equals a normalised reference (max over references)."""
    pred = normalize_answer(prediction)
    return max((1.0 if pred == normalize_answer(r) else 0.0 for r in references), default=0.0)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD's token F1 of the normalised texts, the maximum over references."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for reference in references:
        gold = normalize_answer(reference).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if not pred or not gold:
            f1 = float(pred == gold)
        elif common == 0:
            f1 = 0.0
        else:
            precision, recall = common / len(pred), common / len(gold)
            f1 = 2 * precision * recall / (precision + recall)
        best = max(best, f1)
    return best


def containment(prediction: str, references: Sequence[str]) -> float:
    """1 if a normalised reference appears in the normalised prediction (ALCE's STR-EM for one question)."""
    pred = f" {normalize_answer(prediction)} "
    return max((1.0 if f" {normalize_answer(r)} " in pred else 0.0 for r in references if r.strip()), default=0.0)


# --- citations --------------------------------------------------------------------------------------------------
def answer_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """Split an answer into (sentence, its marker numbers); trailing text without a marker cites nothing."""
    out: list[tuple[str, list[int]]] = []
    end = 0
    for match in _SEGMENT.finditer(answer):
        text = match.group(1).strip()
        numbers = [int(n) for n in _MARKER.findall(match.group(2))]
        if text:
            out.append((text, numbers))
        elif out:  # a run of markers split by the regex: belongs to the sentence before
            out[-1][1].extend(numbers)
        end = match.end()
    rest = answer[end:].strip()
    if rest:
        out.append((rest, []))
    return out


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()


def citation_is_gold(quote: str, doc_id: str, item: ReferenceItem) -> bool:
    """A citation points at gold evidence: its quote overlaps a gold quote (one contains the other), or, when the
    item has no gold quotes, its document is a gold document."""
    if item.gold_quotes:
        q = _squash(quote)
        return any(g and (_squash(g) in q or q in _squash(g)) for g in item.gold_quotes)
    return doc_id in set(item.gold_doc_ids)


def marker_errors(answer: Answer) -> bool:
    """True when a marker has no citation (out of range) or a citation is never used."""
    used = {int(n) for n in _MARKER.findall(answer.answer)}
    numbers = {c.n for c in answer.citations}
    return bool(used - numbers) or bool(numbers - used)


def citation_scores(answer: Answer, item: ReferenceItem) -> tuple[float, float]:
    """(citation recall, citation precision) of one answer against the item's gold evidence."""
    gold_by_n = {c.n: citation_is_gold(c.quote, c.doc_id, item) for c in answer.citations}
    sentences = answer_sentences(answer.answer)
    recall = sum(any(gold_by_n.get(n, False) for n in ns) for _, ns in sentences) / len(sentences) if sentences else 0.0
    precision = sum(gold_by_n.values()) / len(gold_by_n) if gold_by_n else 0.0
    return recall, precision


# --- why a question failed, and calibration ---------------------------------------------------------------------
def is_right(item: ReferenceItem, answer: Answer, metrics: dict[str, float]) -> bool | None:
    """Whether the answer is right, as ``Answer.confidence`` estimates: None when the item gives no way to tell.

    Unanswerable: never right (a refusal is correct, but there is no right answer). Answerable and refused: not
    right. Answered: containment > 0 when the item has reference answers, else at least one citation of gold
    evidence when it has gold quotes or gold docs, else None.
    """
    if item.unanswerable or answer.no_answer:
        return False
    if any(a.strip() for a in item.answers):
        return metrics["containment"] > 0
    if item.gold_quotes or item.gold_doc_ids:
        return any(citation_is_gold(c.quote, c.doc_id, item) for c in answer.citations)
    return None


def classify(*, unanswerable: bool, refused: bool, right: bool | None, gold_retrieved: bool | None) -> str:
    """The one outcome class of a question.

    ``correct``: answerable and answered right (or with nothing to judge it by), or unanswerable and refused;
    ``answered_unanswerable``: unanswerable but answered; ``false_refusal``: answerable but refused, whatever was
    retrieved; ``retrieval_miss``: answered wrong with no gold doc retrieved; ``wrong_sentence``: answered wrong
    although a gold doc was retrieved (or with no gold docs to tell).
    """
    if unanswerable:
        return CORRECT if refused else ANSWERED_UNANSWERABLE
    if refused:
        return FALSE_REFUSAL
    if right is None or right:
        return CORRECT
    return RETRIEVAL_MISS if gold_retrieved is False else WRONG_SENTENCE


def outcome_counts(results: Sequence[QuestionResult]) -> dict[str, int]:
    """How many questions fell in each outcome class (every class listed, zeros included)."""
    counts = Counter(r.outcome for r in results)
    return {name: counts.get(name, 0) for name in OUTCOMES}


# --- one question, and the whole set ----------------------------------------------------------------------------
@dataclass
class QuestionResult:
    """Everything measured for one question, with what the system answered."""

    id: str
    question: str
    answer: str
    no_answer: bool
    unanswerable: bool
    citations: list[dict[str, Any]]
    ranked_doc_ids: list[str]
    gold_doc_ids: list[str]
    references: list[str]
    latency_ms: float
    metrics: dict[str, float] = field(default_factory=dict)
    badness: float = 0.0
    # One of OUTCOMES (see classify()); whether the answer is right (None: nothing to judge it by); the answer's
    # own estimate of that (None when the answerer gives none); whether a gold doc was among the first k retrieved.
    outcome: str = CORRECT
    right: bool | None = None
    confidence: float | None = None
    gold_retrieved: bool | None = None


def score_question(item: ReferenceItem, answer: Answer, ranked: Sequence[str], latency_ms: float) -> QuestionResult:
    """Apply every metric that the item's gold data allows, and classify the outcome.

    Gold counts as retrieved when a gold doc is among the first k distinct docs of ``ranked``, k being the number
    of passages the answer read (RETRIEVAL_K when it carries none).
    """
    ranked = distinct_docs(ranked)
    metrics: dict[str, float] = {}
    gold = set(item.gold_doc_ids)
    k = len(answer.passages) or RETRIEVAL_K
    gold_retrieved = bool(hit_at(ranked, gold, k)) if gold and not item.unanswerable else None
    if gold and not item.unanswerable:
        relevance = item.relevance or dict.fromkeys(gold, 1)
        for k in (1, 5, 10):
            metrics[f"hit@{k}"] = hit_at(ranked, gold, k)
        metrics["mrr@10"] = mrr_at(ranked, gold, 10)
        metrics["ndcg@10"] = ndcg_at(ranked, relevance, 10)
        metrics["recall@100"] = recall_at(ranked, gold, 100)
    text = "" if answer.no_answer else strip_markers(answer.answer)
    if item.answers and not item.unanswerable:
        metrics["exact_match"] = exact_match(text, item.answers)
        metrics["f1"] = token_f1(text, item.answers)
        metrics["containment"] = containment(text, item.answers)
    if (item.gold_quotes or gold) and not item.unanswerable and not answer.no_answer:
        metrics["citation_recall"], metrics["citation_precision"] = citation_scores(answer, item)
    metrics["marker_error"] = 1.0 if marker_errors(answer) else 0.0
    metrics["refused"] = 1.0 if answer.no_answer else 0.0
    metrics["refusal_correct"] = 1.0 if answer.no_answer == item.unanswerable else 0.0
    right = is_right(item, answer, metrics)
    outcome = classify(
        unanswerable=item.unanswerable, refused=answer.no_answer, right=right, gold_retrieved=gold_retrieved
    )
    primary = [metrics[m] for m in ("ndcg@10", "f1", "citation_recall", "refusal_correct") if m in metrics]
    citations = [
        {
            "n": c.n,
            "doc_id": c.doc_id,
            "quote": c.quote,
            "start": c.start,
            "end": c.end,
            "score": c.score,
            "gold": citation_is_gold(c.quote, c.doc_id, item),
        }
        for c in answer.citations
    ]
    return QuestionResult(
        id=item.id,
        question=item.question,
        answer=answer.answer,
        no_answer=answer.no_answer,
        unanswerable=item.unanswerable,
        citations=citations,
        ranked_doc_ids=list(ranked[:10]),
        gold_doc_ids=list(item.gold_doc_ids),
        references=list(item.answers),
        latency_ms=round(latency_ms, 2),
        metrics=metrics,
        badness=1.0 - sum(primary) / len(primary) if primary else 0.0,
        outcome=outcome,
        right=right,
        confidence=answer.confidence,
        gold_retrieved=gold_retrieved,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation, as numpy's default."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def refusal_scores(results: Sequence[QuestionResult]) -> dict[str, float | None]:
    """Precision and recall of no_answer as a detector of unanswerable questions (None when undefined)."""
    refused = [r for r in results if r.no_answer]
    unanswerable = [r for r in results if r.unanswerable]
    true_pos = sum(1 for r in refused if r.unanswerable)
    return {
        "refusal_precision": true_pos / len(refused) if refused else None,
        "refusal_recall": true_pos / len(unanswerable) if unanswerable else None,
    }


def aggregate(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Mean of every metric over the questions it applies to, refusal precision/recall, the count of each outcome
    class, calibration (ECE and reliability bins; None without confidences) and latency p50/p95."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for result in results:
        for name, value in result.metrics.items():
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    out: dict[str, Any] = {"questions": len(results)}
    for name in sorted(sums):
        out[name] = round(sums[name] / counts[name], 4)
    out["counts"] = dict(sorted(counts.items()))
    for name, maybe in refusal_scores(results).items():
        out[name] = None if maybe is None else round(maybe, 4)
    out["outcomes"] = outcome_counts(results)
    calibrated = calibration(results)
    out["ece"] = None if calibrated is None else calibrated["ece"]
    out["ece_answered"] = None if calibrated is None else calibrated["ece_answered"]
    out["calibration"] = calibrated
    latencies = [r.latency_ms for r in results]
    out["latency_p50_ms"] = round(percentile(latencies, 50), 2)
    out["latency_p95_ms"] = round(percentile(latencies, 95), 2)
    return out


@dataclass
class EvaluationRun:
    """Per-question results, their aggregates and the settings they were measured with."""

    results: list[QuestionResult]
    aggregates: dict[str, Any]
    setup: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"setup": self.setup, "aggregates": self.aggregates, "results": [asdict(r) for r in self.results]}


def evaluate(
    items: Sequence[ReferenceItem],
    *,
    ask: Callable[[str], Answer],
    rank: Callable[[str], list[str]] | None = None,
    progress: bool = False,
    setup: dict[str, Any] | None = None,
) -> EvaluationRun:
    """Ask every question and score it.

    ``ask`` returns the Answer the product gives; ``rank`` (optional) returns a deeper ranked list of doc ids for
    the retrieval metrics (recall@100 needs more than the few passages an answer uses). Without it the ranking is
    the doc ids of the answer's passages.
    """
    iterator: Any = items
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(items, unit="q", desc="evaluating")
        iterator = bar
    results: list[QuestionResult] = []
    try:
        for item in iterator:
            started = time.perf_counter()
            answer = ask(item.question)
            latency = (time.perf_counter() - started) * 1000
            ranked = rank(item.question) if rank else [p.doc_id for p in answer.passages]
            results.append(score_question(item, answer, ranked, latency))
    finally:
        if bar is not None:
            bar.close()
    return EvaluationRun(results=results, aggregates=aggregate(results), setup=dict(setup or {}))


def service_callables(service: Any, *, top_k: int | None = None, depth: int = RANK_DEPTH) -> tuple[Any, Any]:
    """(ask, rank) over a RAGService: the answer from the normal top_k, the ranking from ``depth`` passages."""

    def ask(question: str) -> Answer:
        answer: Answer = service.ask(question, top_k=top_k)
        return answer

    def rank(question: str) -> list[str]:
        passages = service.retriever.retrieve(question, top_k=depth)
        return [p.doc_id for p in passages]

    return ask, rank
