"""The HTML report: outcome counts, the reliability diagram, worst questions per class and the filterable table."""

from __future__ import annotations

import re

from rag.evaluation.metrics import OUTCOMES, EvaluationRun, aggregate, score_question
from rag.evaluation.references import ReferenceItem
from rag.evaluation.report import render_html, worst_by_outcome
from rag.types import Answer, Citation


def _answer(text: str, *, refused: bool = False, confidence: float | None = None) -> Answer:
    if refused:
        return Answer(question="?", answer="No answer.", no_answer=True, confidence=confidence)
    cite = Citation(n=1, doc_id="gold", source="gold", quote=text, start=0, end=len(text), score=0.5)
    return Answer(question="?", answer=f"{text} [1]", no_answer=False, citations=[cite], confidence=confidence)


def _run(n: int, *, confidence: bool = True) -> EvaluationRun:
    """n questions cycling through the five classes (answers long enough to look like real ones)."""
    results = []
    for i in range(n):
        kind = i % 5
        item = ReferenceItem(
            id=f"q{i}",
            question=f"Question <{i}> about Alipio?",
            answers=["Alipio"] if kind < 4 else [],
            gold_doc_ids=["gold"] if kind < 4 else [],
            unanswerable=kind == 4,
        )
        conf = (i % 10) / 10 if confidence else None
        filler = " and the rest of a long extractive sentence, " * 4
        answer = {
            0: _answer(f"It was Alipio{filler}", confidence=conf),
            1: _answer(f"It was Gabriel{filler}", confidence=conf),
            2: _answer(f"It was Gabriel{filler}", confidence=conf),
            3: _answer("", refused=True, confidence=conf),
            4: _answer(f"It was Gabriel{filler}", confidence=conf),
        }[kind]
        ranked = ["x1", "x2", "x3", "x4", "x5", "gold"] if kind == 2 else ["gold"]
        results.append(score_question(item, answer, ranked, 12.0))
    return EvaluationRun(results=results, aggregates=aggregate(results), setup={"corpus": "test"})


def test_render_html_lists_every_question_in_a_filterable_table() -> None:
    run = _run(10)
    page = render_html(run)
    rows = re.findall(r"<tr data-outcome='(\w+)'>", page)
    assert len(rows) == 10 and rows == [r.outcome for r in run.results]
    assert "<td>q7</td>" in page and "Question &lt;7&gt; about Alipio?" in page
    assert "id='q-text'" in page and "id='q-class'" in page
    assert all(f"<option value='{name}'>" in page for name in OUTCOMES)
    assert "<option value='retrieval_miss'>retrieval_miss (2)</option>" in page
    # Self-contained: the script is inline and nothing is fetched.
    assert page.count("<script>") == 1 and "<script src" not in page and "http" not in page.lower()


def test_render_html_shows_outcome_counts_and_worst_per_class() -> None:
    page = render_html(_run(10))
    for name in OUTCOMES:
        assert re.search(rf"<td class='o-{name}'>{name}</td><td>2</td><td>20.0%</td>", page)
        assert f"<h3 class='o-{name}'>{name} (2 of 2)</h3>" in page


def test_worst_by_outcome_lowest_containment_first() -> None:
    item = ReferenceItem(id="a", question="?", answers=["Alipio", "Ruiz"], gold_doc_ids=["gold"])
    wrong = score_question(item, _answer("Gabriel"), ["gold"], 1.0)
    partial = score_question(item, _answer("Alipio"), ["gold"], 1.0)
    refused_hit = score_question(item, _answer("", refused=True), ["gold"], 1.0)
    refused_miss = score_question(item, _answer("", refused=True), ["x"], 1.0)
    worst = worst_by_outcome([partial, wrong, refused_hit, refused_miss], per_class=5)
    assert worst["correct"] == [partial] and worst["wrong_sentence"] == [wrong]
    # Same containment (0): the worse one (its retrieval also missed) comes first.
    assert worst["false_refusal"] == [refused_miss, refused_hit]
    assert len(worst_by_outcome([wrong] * 9, per_class=3)["wrong_sentence"]) == 3


def test_render_html_draws_reliability_diagram_with_ece() -> None:
    # Confidence i/10 for two questions per bin; only the bins 0.0 and 0.5 hold right answers (class 0), so
    # ECE = 2/20 * (|0 - 1| + |0.5 - 1| + sum of the other bins' confidences 0.1..0.9 but 0.5) = 0.1 * 5.5.
    run = _run(20)
    assert run.aggregates["ece"] == 0.55 and run.aggregates["calibration"]["questions"] == 20
    page = render_html(run)
    assert "alt='Reliability diagram'" in page and "ECE <b>0.55</b>" in page


def test_render_html_without_confidences_skips_calibration() -> None:
    run = _run(10, confidence=False)
    page = render_html(run)
    assert run.aggregates["ece"] is None
    assert "Reliability diagram" not in page and "nothing to calibrate" in page


def test_render_html_stays_small_for_a_thousand_questions() -> None:
    page = render_html(_run(1000))
    assert len(re.findall(r"<tr data-outcome=", page)) == 1000
    # Answers are cut in the table: about 1 KB a question, plots included.
    assert len(page.encode()) < 1_200_000
