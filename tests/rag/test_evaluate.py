"""Metric functions on hand-made cases with known values, and reference-set loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag.errors import InvalidInput
from rag.evaluation.metrics import (
    aggregate,
    answer_sentences,
    citation_scores,
    containment,
    distinct_docs,
    exact_match,
    hit_at,
    marker_errors,
    mrr_at,
    ndcg_at,
    normalize_answer,
    percentile,
    recall_at,
    refusal_scores,
    score_question,
    strip_markers,
    token_f1,
)
from rag.evaluation.references import ReferenceItem, iter_corpus, load_beir, load_jsonl, load_references
from rag.types import Answer, Citation


def test_distinct_docs_keeps_first_rank() -> None:
    assert distinct_docs(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_hit_mrr_recall_known_values() -> None:
    ranked = ["x", "y", "g1", "z", "g2"]
    gold = {"g1", "g2", "g3"}
    assert hit_at(ranked, gold, 1) == 0.0
    assert hit_at(ranked, gold, 3) == 1.0
    assert mrr_at(ranked, gold, 10) == pytest.approx(1 / 3)
    assert mrr_at(ranked, gold, 2) == 0.0
    assert recall_at(ranked, gold, 100) == pytest.approx(2 / 3)
    assert recall_at(ranked, gold, 3) == pytest.approx(1 / 3)


def test_ndcg_known_values() -> None:
    # One relevant doc at rank 2: DCG = 1/log2(3), IDCG = 1.
    assert ndcg_at(["a", "g"], {"g": 1}) == pytest.approx(1 / math.log2(3))
    # Perfect order is 1; graded relevance uses gain rel.
    assert ndcg_at(["g2", "g1"], {"g1": 1, "g2": 2}) == pytest.approx(1.0)
    swapped = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at(["g1", "g2"], {"g1": 1, "g2": 2}) == pytest.approx(swapped)
    assert ndcg_at(["a", "b"], {"g": 1}) == 0.0
    # Only the first k count.
    assert ndcg_at(["a", "b", "g"], {"g": 1}, k=2) == 0.0


def test_squad_normalisation_em_and_f1() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    # pred "denver broncos won" vs gold "denver broncos": p=2/3, r=1 -> f1=0.8
    assert token_f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    # max over references
    assert token_f1("Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert token_f1("nothing alike", ["Denver"]) == 0.0


def test_containment_matches_whole_words() -> None:
    assert containment("It began in October 1973 [1].", ["October 1973"]) == 1.0
    assert containment("It began in 19734.", ["1973"]) == 0.0
    assert containment("anything", []) == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("It was Alipio’s men [1].", "Alipio"),
        ("It was Alipio's men.", "Alipio"),
        ("They were Alipio’s.", "Alipio's"),
        ("The war lasted 1939–1945.", "1939-1945"),
        ("The war lasted 1939—1945.", "1939−1945"),
        ("He said “never again” in 1946.", '"never again"'),
        ("He said «never again».", "“never again”"),
        ("the ‘Shining Path’ faction", "'Shining Path'"),
    ],
)
def test_containment_folds_quotes_dashes_and_possessives(prediction: str, reference: str) -> None:
    assert containment(prediction, [reference]) == 1.0


def test_normalize_answer_folds_typography_before_punctuation() -> None:
    assert normalize_answer("Alipio’s") == normalize_answer("Alipio") == "alipio"
    assert normalize_answer("1939–1945") == normalize_answer("1939-1945") == "19391945"
    assert normalize_answer("“Quoted” ‘words’") == normalize_answer("\"Quoted\" 'words'")
    # Only a word-final 's is a possessive: other apostrophes just go with the punctuation.
    assert normalize_answer("O’Sullivan’s seas") == "osullivan seas"
    assert exact_match("Alipio’s", ["Alipio"]) == 1.0
    assert token_f1("1939–1945 war", ["1939-1945 war"]) == 1.0


def test_containment_still_needs_the_possessor() -> None:
    assert containment("Alipio’s men", ["Alipio Ruiz"]) == 0.0
    assert containment("1939–1945", ["1939"]) == 0.0


def test_answer_sentences_and_strip_markers() -> None:
    answer = "First fact [1]. Second fact [2] [3]. Dangling text"
    assert answer_sentences("First fact [1] Second [2][3]") == [("First fact", [1]), ("Second", [2, 3])]
    assert [ns for _, ns in answer_sentences(answer)] == [[1], [2, 3], []]
    assert strip_markers("A [1] B [2].") == "A B ."


def _cite(n: int, quote: str, doc: str = "d1") -> Citation:
    return Citation(n=n, doc_id=doc, source=doc, quote=quote, start=0, end=len(quote), score=0.5)


def test_citation_recall_and_precision_against_gold_quotes() -> None:
    item = ReferenceItem(id="q", question="?", gold_doc_ids=["d1"], gold_quotes=["reaction to anti-narcotics"])
    answer = Answer(
        question="?",
        answer="It was a reaction to anti-narcotics efforts. [1] Also something else. [2]",
        no_answer=False,
        citations=[_cite(1, "It was a reaction to anti-narcotics efforts."), _cite(2, "Also something else.")],
    )
    recall, precision = citation_scores(answer, item)
    assert recall == 0.5 and precision == 0.5
    # Without gold quotes, a citation of a gold document counts.
    by_doc = ReferenceItem(id="q", question="?", gold_doc_ids=["d1"])
    assert citation_scores(answer, by_doc) == (1.0, 1.0)


def test_marker_errors_detects_unused_and_out_of_range() -> None:
    good = Answer(question="?", answer="A [1]", no_answer=False, citations=[_cite(1, "A")])
    out_of_range = Answer(question="?", answer="A [2]", no_answer=False, citations=[_cite(1, "A")])
    unused = Answer(question="?", answer="A [1]", no_answer=False, citations=[_cite(1, "A"), _cite(2, "B")])
    assert not marker_errors(good)
    assert marker_errors(out_of_range) and marker_errors(unused)


def _result(no_answer: bool, unanswerable: bool, latency: float = 10.0):  # type: ignore[no-untyped-def]
    item = ReferenceItem(id="q", question="?", unanswerable=unanswerable)
    answer = Answer(question="?", answer="x", no_answer=no_answer)
    return score_question(item, answer, [], latency)


def test_refusal_precision_and_recall() -> None:
    results = [_result(True, True), _result(True, False), _result(False, True), _result(False, False)]
    assert refusal_scores(results) == {"refusal_precision": 0.5, "refusal_recall": 0.5}
    assert refusal_scores([_result(False, False)]) == {"refusal_precision": None, "refusal_recall": None}


def test_aggregate_means_over_applicable_questions_and_latency() -> None:
    item = ReferenceItem(id="a", question="?", answers=["Paris"], gold_doc_ids=["g"])
    hit = score_question(
        item, Answer(question="?", answer="Paris [1]", no_answer=False, citations=[_cite(1, "Paris", "g")]), ["g"], 30
    )
    miss = score_question(item, Answer(question="?", answer="x", no_answer=True), ["z"], 10)
    agg = aggregate([hit, miss, _result(True, True, latency=20)])
    assert agg["exact_match"] == 0.5 and agg["ndcg@10"] == 0.5 and agg["hit@1"] == 0.5
    assert agg["counts"]["ndcg@10"] == 2 and agg["counts"]["citation_recall"] == 1
    assert agg["latency_p50_ms"] == 20.0
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)


def test_load_jsonl_validates_with_line_numbers(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "1", "question": "q?", "answers": ["a"]}\n\n{"id": 2, "question": "r?"}\n')
    items = load_jsonl(good)
    assert [i.id for i in items] == ["1", "2"] and items[0].answers == ["a"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "q?"}\n{"id": "2", "question": ""}\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl:2: 'question'"):
        load_jsonl(bad)


def _tiny_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Cats", "text": "Cats purr."},
        {"_id": "d2", "title": "", "text": "Dogs bark."},
    ]
    queries = [
        {"_id": "q1", "text": "What purrs?", "metadata": {"answers": ["Cats", "cats", "Cats"]}},
        {"_id": "q2", "text": "What barks?", "metadata": {}},
        {"_id": "q3", "text": "Not in this split", "metadata": {}},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td1\t0\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\t1\n")
    return root


def test_load_beir_reads_split_answers_and_graded_qrels(tmp_path: Path) -> None:
    root = _tiny_beir(tmp_path / "tiny")
    items = load_references(root, split="test")
    assert [i.id for i in items] == ["q1", "q2"]
    assert items[0].answers == ["Cats", "cats"] and items[0].gold_doc_ids == ["d1"]
    assert items[1].relevance == {"d2": 2}  # zero-relevance rows are not gold
    assert [i.id for i in load_beir(root, split="train")] == ["q3"]
    assert len(load_beir(root, split="test", limit=1)) == 1
    docs = list(iter_corpus(root))
    assert docs[0].full_text() == "Cats\n\nCats purr." and docs[1].full_text() == "Dogs bark."
    with pytest.raises(InvalidInput, match="has: test, train"):
        load_beir(root, split="dev")
