"""Marker parsing, range checks, renumbering and the support judge on hand-made cases (real MiniLM model)."""

from __future__ import annotations

import pytest

from rag.answering.citations import CitationChecker, clean_sentence, split_sentences
from rag.answering.judge import SupportJudge, features, numbers
from rag.embedding import SentenceTransformerEmbedder
from rag.types import Passage

DOC_A = (
    "The bridge was opened to traffic in 1932 after four years of work. "
    "It carries six lanes of road traffic. "
    "Its steel arch weighs 39,000 tonnes."
)
DOC_B = "The river below is tidal. Ferries crossed it before the bridge existed, about 40 million passengers a year."


def _passage(doc_id: str, doc: str, start: int, end: int) -> Passage:
    return Passage(
        chunk_id=f"{doc_id}:{start}",
        doc_id=doc_id,
        source=f"/docs/{doc_id}",
        start=start,
        end=end,
        text=doc[start:end],
        score=1.0,
    )


@pytest.fixture(scope="module")
def judge(embedder: SentenceTransformerEmbedder) -> SupportJudge:
    return SupportJudge(embed=embedder.embed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "It opened in 1932 [1]. It has six lanes [2][3].",
            [("It opened in 1932.", [1]), ("It has six lanes.", [2, 3])],
        ),
        ("It opened in 1932. [2] It has six lanes. [1]", [("It opened in 1932.", [2]), ("It has six lanes.", [1])]),
        ("It opened in 1932 [1, 2].", [("It opened in 1932.", [1, 2])]),
        ("It opened in 1932 [Passage 3].", [("It opened in 1932.", [3])]),
        ("Answer: It opened in 1932 [1][1].", [("It opened in 1932.", [1])]),
        ("- It opened in 1932 [1]\n- It has six lanes [2]", [("It opened in 1932", [1]), ("It has six lanes", [2])]),
        ("It opened in 1932.", [("It opened in 1932.", [])]),
    ],
)
def test_split_sentences_assigns_markers_to_their_sentence(text: str, expected: list[tuple[str, list[int]]]) -> None:
    parsed = split_sentences(text, passage_count=3)
    assert [(s.text, s.markers) for s in parsed] == expected


def test_split_sentences_out_of_range_markers_are_removed_and_reported() -> None:
    parsed = split_sentences("It opened in 1932 [0][4][2]. It has six lanes [9].", passage_count=3)
    assert [s.markers for s in parsed] == [[2], []]
    assert [s.out_of_range for s in parsed] == [[0, 4], [9]]


def test_clean_sentence_removes_markers_and_spaces_before_punctuation() -> None:
    assert clean_sentence("  It opened [1] in 1932 [2] .") == "It opened in 1932."


def test_numbers_ignore_thousands_separators() -> None:
    assert numbers("It weighs 39,000 tonnes and cost 4.2 million in 1932.") == {"39000", "4.2", "1932"}


def test_judge_supports_a_paraphrase_and_rejects_an_unrelated_claim(judge: SupportJudge) -> None:
    passage = _passage("a.txt", DOC_A, 0, len(DOC_A))
    [good] = judge.best_evidence("The bridge opened to traffic in 1932.", [passage.text])
    [bad] = judge.best_evidence("Penguins live in Antarctica and eat krill.", [passage.text])
    assert good is not None and bad is not None
    assert good.supported and not bad.supported
    assert passage.text[good.start : good.end].startswith("The bridge was opened to traffic in 1932")


def test_judge_penalises_a_wrong_number(judge: SupportJudge) -> None:
    sentence = "Its steel arch weighs 39,000 tonnes."
    right, wrong = (
        judge.score_pairs("The arch weighs 39,000 tonnes.", [sentence])[0],
        judge.score_pairs("The arch weighs 12,000 tonnes.", [sentence])[0],
    )
    assert right > wrong
    assert features("The arch weighs 12,000 tonnes.", sentence, 0.9)[5] == 1.0  # numbers_missing


def test_checker_renumbers_by_first_appearance_with_exact_quotes(judge: SupportJudge) -> None:
    passages = [_passage("a.txt", DOC_A, 0, len(DOC_A)), _passage("b.txt", DOC_B, 0, len(DOC_B))]
    documents = {"a.txt": DOC_A, "b.txt": DOC_B}
    checker = CitationChecker(judge=judge)
    parsed = split_sentences(
        "Ferries carried about 40 million passengers a year [2]. The bridge opened in 1932 [1][2]. "
        "The arch weighs 39,000 tonnes [1].",
        passage_count=2,
    )
    rendered = [checker.keep(checker.check(s, passages)) for s in parsed]
    citations = checker.citations()
    assert [c.n for c in citations] == list(range(1, len(citations) + 1))
    assert rendered[0][0] == "Ferries carried about 40 million passengers a year. [1]"
    first = citations[0]
    assert first.doc_id == "b.txt" and "40 million" in first.quote
    for c in citations:
        assert documents[c.doc_id][c.start : c.end] == c.quote
        assert c.supported is not None
    # Two quotes cited from passage 1: the 1932 sentence and the arch sentence get different numbers.
    a_quotes = [c for c in citations if c.doc_id == "a.txt"]
    assert len({c.quote for c in a_quotes}) == len(a_quotes) == 2
    verdicts = [v for _, v in rendered]
    assert verdicts[0].supported and verdicts[2].supported
    assert all(v.citations for v in verdicts)
