from __future__ import annotations

import pytest

from rag.text import normalize_text, sentence_spans, terms


def test_normalize_text_collapses_space_and_line_ends() -> None:
    raw = "Title\r\n\r\n\r\n  Hello\u00a0 world\t!  \r\nNext\u2003line "
    assert normalize_text(raw) == "Title\n\nHello world !\nNext line"


def test_normalize_text_is_idempotent() -> None:
    raw = "A  b\r\n\n\n\nc \ufb01le"
    once = normalize_text(raw)
    assert normalize_text(once) == once
    assert "file" in once  # NFKC unfolds the ligature


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three?", ["One.", "Two!", "Three?"]),
        (
            "Dr. Smith met J. Doe in the U.S. in 1999. Then he left.",
            ["Dr. Smith met J. Doe in the U.S. in 1999.", "Then he left."],
        ),
        ("He said \u201cstop.\u201d Then it ended.", ["He said \u201cstop.\u201d", "Then it ended."]),
        ("A heading\nA line of text.", ["A heading", "A line of text."]),
        ("Values e.g. five and six. Done", ["Values e.g. five and six.", "Done"]),
    ],
)
def test_sentence_spans_split_where_expected(text: str, expected: list[str]) -> None:
    assert [text[s:e] for s, e in sentence_spans(text)] == expected


def test_sentence_spans_apply_offset() -> None:
    text = "  First one. Second one."
    spans = sentence_spans(text, offset=100)
    assert [(s - 100, e - 100) for s, e in spans] == [(2, 12), (13, 24)]


def test_terms_drop_stopwords_and_stem() -> None:
    assert terms("Why did the attacks happen in February?") == ["attack", "happen", "februari"]
