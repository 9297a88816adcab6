"""Outcome classes, calibration (reliability bins and ECE) and their aggregates, on hand-built answers."""

from __future__ import annotations

import pytest

from rag.evaluation.calibration import calibration, reliability
from rag.evaluation.metrics import (
    ANSWERED_UNANSWERABLE,
    CORRECT,
    FALSE_REFUSAL,
    OUTCOMES,
    RETRIEVAL_MISS,
    WRONG_SENTENCE,
    QuestionResult,
    aggregate,
    score_question,
)
from rag.evaluation.references import ReferenceItem
from rag.types import Answer, Citation, Passage

ANSWERABLE = ReferenceItem(id="a", question="Who leads?", answers=["Alipio"], gold_doc_ids=["gold"])
UNANSWERABLE = ReferenceItem(id="u", question="Who bakes?", unanswerable=True)
OTHERS = ["x1", "x2", "x3", "x4", "x5"]


def _answer(text: str, *, refused: bool = False, doc: str = "gold", confidence: float | None = None) -> Answer:
    if refused:
        return Answer(question="?", answer="No answer.", no_answer=True, confidence=confidence)
    quote = text.split(" [")[0]
    cite = Citation(n=1, doc_id=doc, source=doc, quote=quote, start=0, end=len(quote), score=0.5)
    return Answer(question="?", answer=text, no_answer=False, citations=[cite], confidence=confidence)


def _passages(*docs: str) -> list[Passage]:
    return [
        Passage(chunk_id=f"{d}#{i}", doc_id=d, source=d, start=0, end=4, text="text", score=0.5)
        for i, d in enumerate(docs)
    ]


@pytest.mark.parametrize(
    ("item", "answer", "ranked", "outcome"),
    [
        (ANSWERABLE, _answer("It was Alipio\u2019s men [1]"), ["gold", *OTHERS], CORRECT),
        (ANSWERABLE, _answer("It was Gabriel [1]"), ["gold", *OTHERS], WRONG_SENTENCE),
        # Gold at rank 6: outside the 5 passages an answer reads.
        (ANSWERABLE, _answer("It was Gabriel [1]", doc="x1"), [*OTHERS, "gold"], RETRIEVAL_MISS),
        (ANSWERABLE, _answer("", refused=True), ["gold", *OTHERS], FALSE_REFUSAL),
        (ANSWERABLE, _answer("", refused=True), [*OTHERS, "gold"], FALSE_REFUSAL),
        (UNANSWERABLE, _answer("It was Gabriel [1]", doc="x1"), OTHERS, ANSWERED_UNANSWERABLE),
        (UNANSWERABLE, _answer("", refused=True), OTHERS, CORRECT),
    ],
)
def test_score_question_classifies_each_outcome(
    item: ReferenceItem, answer: Answer, ranked: list[str], outcome: str
) -> None:
    assert score_question(item, answer, ranked, 1.0).outcome == outcome


def test_score_question_retrieval_depth_is_the_answers_passage_count() -> None:
    wrong = _answer("It was Gabriel [1]", doc="x1")
    ranked = ["x1", "x2", "gold"]
    assert score_question(ANSWERABLE, wrong, ranked, 1.0).outcome == WRONG_SENTENCE
    two = wrong.model_copy(update={"passages": _passages("x1", "x2")})
    result = score_question(ANSWERABLE, two, ranked, 1.0)
    assert result.outcome == RETRIEVAL_MISS and result.gold_retrieved is False


def test_score_question_without_references_judges_by_gold_citation() -> None:
    by_quote = ReferenceItem(id="q", question="?", gold_doc_ids=["gold"], gold_quotes=["the attacks were desperate"])
    right = _answer("the attacks were desperate [1]")
    wrong = _answer("Something else entirely [1]")
    assert score_question(by_quote, right, ["gold"], 1.0).outcome == CORRECT
    assert score_question(by_quote, wrong, ["gold"], 1.0).outcome == WRONG_SENTENCE
    by_doc = ReferenceItem(id="q", question="?", gold_doc_ids=["gold"])
    assert score_question(by_doc, _answer("Anything [1]", doc="x1"), OTHERS, 1.0).outcome == RETRIEVAL_MISS


def test_score_question_with_nothing_to_judge_is_correct_when_answered() -> None:
    bare = ReferenceItem(id="q", question="?")
    answered = score_question(bare, _answer("Anything [1]"), [], 1.0)
    assert answered.outcome == CORRECT and answered.right is None
    assert score_question(bare, _answer("", refused=True), [], 1.0).outcome == FALSE_REFUSAL


def test_score_question_keeps_confidence_and_rightness() -> None:
    result = score_question(ANSWERABLE, _answer("Alipio [1]", confidence=0.83), ["gold"], 1.0)
    assert result.confidence == 0.83 and result.right is True
    refused = score_question(ANSWERABLE, _answer("", refused=True, confidence=0.2), ["gold"], 1.0)
    assert refused.confidence == 0.2 and refused.right is False
    assert score_question(UNANSWERABLE, _answer("x [1]"), [], 1.0).confidence is None


def test_reliability_ece_on_known_toy_set() -> None:
    # Bin [0.2, 0.3): confidences 0.2, 0.2 -> mean 0.2, 1 of 2 right -> gap 0.3, weight 2/5.
    # Bin [0.9, 1.0]: 0.9, 1.0, 0.95 -> mean 0.95, 2 of 3 right -> gap 0.95 - 2/3, weight 3/5.
    pairs = [(0.2, True), (0.2, False), (0.9, True), (1.0, True), (0.95, False)]
    ece, bins = reliability(pairs)
    assert ece == pytest.approx(2 / 5 * 0.3 + 3 / 5 * (0.95 - 2 / 3))
    assert len(bins) == 10 and sum(b["n"] for b in bins) == 5
    assert bins[2] == {"lo": 0.2, "hi": 0.3, "n": 2, "confidence": 0.2, "accuracy": 0.5}
    assert bins[9]["n"] == 3 and bins[9]["accuracy"] == pytest.approx(0.6667)
    assert bins[0] == {"lo": 0.0, "hi": 0.1, "n": 0, "confidence": None, "accuracy": None}


def test_reliability_perfectly_calibrated_is_zero() -> None:
    pairs = [(0.25, True), (0.25, False), (0.25, False), (0.25, False), (0.0, False), (1.0, True)]
    assert reliability(pairs)[0] == pytest.approx(0.0)


def _scored(item: ReferenceItem, answer: Answer) -> QuestionResult:
    return score_question(item, answer, ["gold"], 1.0)


def test_calibration_counts_refusals_and_unanswerables_as_not_right() -> None:
    results = [
        _scored(ANSWERABLE, _answer("Alipio [1]", confidence=0.9)),  # right
        _scored(ANSWERABLE, _answer("", refused=True, confidence=0.3)),  # refused: not right
        _scored(UNANSWERABLE, _answer("Gabriel [1]", confidence=0.7)),  # unanswerable: not right
        _scored(ANSWERABLE, _answer("Gabriel [1]")),  # no confidence: left out
    ]
    cal = calibration(results)
    assert cal is not None and cal["questions"] == 3 and cal["answered"] == 2
    assert cal["ece"] == pytest.approx((0.1 + 0.3 + 0.7) / 3, abs=1e-4)
    assert cal["ece_answered"] == pytest.approx((0.1 + 0.7) / 2, abs=1e-4)
    assert cal["accuracy"] == pytest.approx(1 / 3, abs=1e-4)


def test_calibration_without_confidences_is_none() -> None:
    results = [_scored(ANSWERABLE, _answer("Alipio [1]")), _scored(UNANSWERABLE, _answer("", refused=True))]
    assert calibration(results) is None
    agg = aggregate(results)
    assert agg["calibration"] is None and agg["ece"] is None and agg["ece_answered"] is None


def test_aggregate_outcome_counts_sum_to_questions() -> None:
    results = [
        _scored(ANSWERABLE, _answer("Alipio [1]", confidence=0.8)),
        _scored(ANSWERABLE, _answer("Gabriel [1]", confidence=0.6)),
        _scored(ANSWERABLE, _answer("", refused=True, confidence=0.1)),
        _scored(UNANSWERABLE, _answer("Gabriel [1]", confidence=0.4)),
        _scored(UNANSWERABLE, _answer("", refused=True, confidence=0.05)),
        score_question(ANSWERABLE, _answer("Gabriel [1]", doc="x1"), OTHERS, 1.0),
    ]
    agg = aggregate(results)
    assert list(agg["outcomes"]) == list(OUTCOMES)
    assert agg["outcomes"] == {
        CORRECT: 2,
        RETRIEVAL_MISS: 1,
        WRONG_SENTENCE: 1,
        FALSE_REFUSAL: 1,
        ANSWERED_UNANSWERABLE: 1,
    }
    assert sum(agg["outcomes"].values()) == agg["questions"] == 6
    assert agg["calibration"]["questions"] == 5 and agg["ece"] == agg["calibration"]["ece"]
