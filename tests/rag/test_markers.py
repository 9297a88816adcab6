"""A source's own brackets ("[2]", "[12, 13]", "[SD]", "[Box 2]") never read as our citation markers.

Extractive answers go through the real pipeline (index -> retrieve -> answer, real Chroma and MiniLM); the generated
path's parser is tested on fixed model outputs (pure functions) and with the real support judge.
"""

from __future__ import annotations

import re

import pytest

from rag.answering.citations import CitationChecker, split_sentences, unmark_copies
from rag.answering.generated import build_messages
from rag.answering.judge import SupportJudge
from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.evaluation.metrics import answer_sentences, marker_errors
from rag.factory import build_service
from rag.text import escape_brackets
from rag.types import Answer, Passage
from tests.conftest import index_text

FILARIASIS = (
    "Neglected tropical diseases in Africa\n\n"
    "Neglected tropical diseases affect more than one billion people [1]. "
    "Lymphatic filariasis is a parasitic disease spread by mosquitoes that damages the lymph system [Box 2]. "
    "Mass drug administration with albendazole and ivermectin interrupted the transmission of lymphatic "
    "filariasis in Togo [2], as earlier trials had shown [12, 13]. "
    "Funding for these programmes rose after 2006 [3], [4].\n\n"
    "Heart failure\n\n"
    "Of 2,000 patients with heart failure (57% women; mean [SD] age, 74 [14] years), most lived in cities [5]. "
    "The incidence of heart failure in women fell by 10% after 1979 [6-8]."
)
QUESTIONS = [
    "Which drugs interrupted the transmission of lymphatic filariasis in Togo?",
    "What was the mean age of the patients with heart failure?",
]
OUR_MARKER = re.compile(r"\[(\d+)\]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("filariasis [2].", "filariasis (2)."),
        ("as shown [12, 13]", "as shown (12, 13)"),
        ("mean [SD] age, 74 [14] years", "mean (SD) age, 74 (14) years"),
        ("the lymph system [Box 2]", "the lymph system (Box 2)"),
        ("an unclosed [ bracket ]]", "an unclosed ( bracket ))"),
        ("no brackets (1)", "no brackets (1)"),
    ],
)
def test_escape_brackets_turns_square_brackets_into_parentheses(text: str, expected: str) -> None:
    assert escape_brackets(text) == expected


@pytest.fixture(scope="module")
def bracket_settings(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Settings:
    """A store holding one document full of its own bracketed reference marks."""
    return index_text(tmp_path_factory.mktemp("brackets"), embedder, {"review.txt": FILARIASIS})


@pytest.fixture(scope="module")
def bracket_answers(bracket_settings: Settings, embedder: SentenceTransformerEmbedder) -> list[Answer]:
    service = build_service(bracket_settings, embedder=embedder)
    return [service.ask(q) for q in QUESTIONS]


@pytest.mark.parametrize("index", range(len(QUESTIONS)))
def test_extractive_answer_escapes_the_sources_brackets(bracket_answers: list[Answer], index: int) -> None:
    answer = bracket_answers[index]
    assert not answer.no_answer, answer
    # The only square brackets left in the answer text are our markers, numbered 1..k by first appearance.
    assert re.sub(r"\[\d+\]", "", answer.answer).count("[") == 0, answer.answer
    assert "]" not in re.sub(r"\[\d+\]", "", answer.answer)
    numbers = [int(n) for n in OUR_MARKER.findall(answer.answer)]
    assert list(dict.fromkeys(numbers)) == list(range(1, len(answer.citations) + 1))
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    assert not marker_errors(answer)
    assert all(ns for _, ns in answer_sentences(answer.answer))


def test_extractive_answer_quotes_keep_the_original_brackets(
    bracket_answers: list[Answer], bracket_settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    filariasis, heart = bracket_answers
    text = build_service(bracket_settings, embedder=embedder).get_document("review.txt").text
    assert text is not None
    for answer in bracket_answers:
        for c in answer.citations:
            assert text[c.start : c.end] == c.quote  # offsets are the truth: quotes are never escaped
    togo = next(c for c in filariasis.citations if "Togo" in c.quote)
    assert "in Togo [2], as earlier trials had shown [12, 13]." in togo.quote
    assert "in Togo (2), as earlier trials had shown (12, 13)." in filariasis.answer
    age = next(c for c in heart.citations if "74" in c.quote)
    assert "mean [SD] age, 74 [14] years" in age.quote
    assert "mean (SD) age, 74 (14) years" in heart.answer


# --- the generated path -----------------------------------------------------------------------------------------
PASSAGE_TEXTS = [
    "Mass drug administration with albendazole interrupted transmission in Togo [2], as trials had shown [12, 13].",
    "Of 2,000 patients (57% women; mean [SD] age, 74 [14] years), most lived in cities [1].",
    "The lymph system is damaged by the parasite [Box 2].",
]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        # A reference mark copied with the words before it is text; the model's own marker after it still counts.
        (
            "Albendazole interrupted transmission in Togo [2], as trials had shown [12, 13] [1].",
            [("Albendazole interrupted transmission in Togo (2), as trials had shown (12, 13).", [1], [])],
        ),
        (
            "Patients had a mean [SD] age, 74 [14] years [2].",
            [("Patients had a mean (SD) age, 74 (14) years.", [2], [])],
        ),
        # Copied whole, with the source's mark at its end: no marker left (the judge may attribute it).
        ("Most lived in cities [1].", [("Most lived in cities (1).", [], [])]),
        # "[Box 2]" and "[SD]" are never markers, copied or not.
        (
            "The parasite damages the lymph system [Box 2] [3].",
            [("The parasite damages the lymph system (Box 2).", [3], [])],
        ),
        ("Their mean [SD] age was high [2].", [("Their mean (SD) age was high.", [2], [])]),
        # The model's own markers, after its own words, are markers (in range or reported as out of range).
        (
            "Albendazole stopped transmission in Togo [1]. Patients were 74 on average [2][9].",
            [("Albendazole stopped transmission in Togo.", [1], []), ("Patients were 74 on average.", [2], [9])],
        ),
    ],
)
def test_split_sentences_copied_brackets_are_text_not_markers(
    output: str, expected: list[tuple[str, list[int], list[int]]]
) -> None:
    parsed = split_sentences(output, passage_count=3, passages=PASSAGE_TEXTS)
    assert [(s.text, s.markers, s.out_of_range) for s in parsed] == expected


def test_unmark_copies_leaves_text_without_passages_alone() -> None:
    output = "Albendazole interrupted transmission in Togo [2]."
    assert unmark_copies(output, []) == output
    assert unmark_copies(output, ["Nothing about it here [2]."]) == output


def test_generate_prompt_shows_passage_brackets_as_parentheses() -> None:
    passages = [
        Passage(chunk_id=f"c{n}", doc_id="d", source="d", start=0, end=len(t), text=t, score=1.0)
        for n, t in enumerate(PASSAGE_TEXTS)
    ]
    user = build_messages("Which drug?", passages)[-1]["content"]
    documents = user[: user.index("Question:")]
    # Our passage numbers are the only bracketed numbers the model is shown.
    assert re.findall(r"\[[^\]]*\]", documents) == ["[1]", "[2]", "[3]"]
    assert "Togo (2), as trials had shown (12, 13)." in documents
    assert "mean (SD) age, 74 (14) years" in documents and "(Box 2)" in documents


def test_checker_answer_from_copied_brackets_has_only_our_markers(embedder: SentenceTransformerEmbedder) -> None:
    doc = " ".join(PASSAGE_TEXTS)
    passages, start = [], 0
    for n, text in enumerate(PASSAGE_TEXTS):
        start = doc.index(text, start)
        passages.append(
            Passage(chunk_id=f"c{n}", doc_id="d", source="d", start=start, end=start + len(text), text=text, score=1.0)
        )
    checker = CitationChecker(judge=SupportJudge(embed=embedder.embed))
    output = (
        "Of 2,000 patients, the mean [SD] age was 74 [14] years [2]. "
        "Albendazole interrupted transmission in Togo [2], as trials had shown [12, 13] [1]."
    )
    parsed = split_sentences(output, passage_count=len(passages), passages=PASSAGE_TEXTS)
    rendered = [checker.keep(checker.check(s, passages))[0] for s in parsed]
    citations = checker.citations()
    text = " ".join(rendered)
    answer = Answer(question="q", answer=text, no_answer=False, citations=citations, mode="generated")
    assert re.sub(r"\[\d+\]", "", text).count("[") == 0, text
    assert "Togo (2), as trials had shown (12, 13)." in text
    assert [c.n for c in citations] == list(range(1, len(citations) + 1)) and citations
    for c in citations:
        assert doc[c.start : c.end] == c.quote
    assert not marker_errors(answer)
