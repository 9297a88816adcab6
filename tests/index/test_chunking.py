from __future__ import annotations

from index.chunking import chunk_document
from rag.embedding import MODEL_MAX_TOKENS, count_tokens
from rag.text import content_hash, normalize_text
from rag.types import Document
from tests.conftest import SEEDS


def _doc(text: str, doc_id: str = "d.txt") -> Document:
    text = normalize_text(text)
    return Document(doc_id=doc_id, source=doc_id, text=text, content_hash=content_hash(text))


def _long_text() -> str:
    sentences = [f"Sentence number {i} talks about topic {i % 7} and the value {i * 13}." for i in range(400)]
    paragraphs = [" ".join(sentences[i : i + 9]) for i in range(0, 400, 9)]
    return "\n\n".join(paragraphs)


def test_chunk_document_offsets_slice_text_exactly() -> None:
    doc = _doc(_long_text())
    chunks = chunk_document(doc, chunk_tokens=200, overlap=32)
    assert len(chunks) > 10
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
    assert chunks[0].start == 0
    assert chunks[-1].end == len(doc.text)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_chunk_document_never_exceeds_the_model_window() -> None:
    # One very long sentence must be split too, or the model would silently truncate it.
    text = _long_text() + "\n\n" + " ".join(["supercalifragilistic"] * 900) + "."
    for chunk in chunk_document(_doc(text), chunk_tokens=200, overlap=32):
        assert count_tokens(chunk.text) + 2 <= MODEL_MAX_TOKENS


def test_chunk_document_ids_are_stable_and_content_derived() -> None:
    text = (SEEDS / "000_191f6743ea9cf91a.txt").read_text(encoding="utf-8")
    first = chunk_document(_doc(text), chunk_tokens=200, overlap=32)
    again = chunk_document(_doc(text), chunk_tokens=200, overlap=32)
    other_doc = chunk_document(_doc(text, doc_id="other.txt"), chunk_tokens=200, overlap=32)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert not {c.chunk_id for c in first} & {c.chunk_id for c in other_doc}
    edited = chunk_document(_doc(text.replace("InSight Crime Analysis", "Analysis")), chunk_tokens=200, overlap=32)
    assert {c.chunk_id for c in first} != {c.chunk_id for c in edited}


def test_chunk_document_repeated_content_gets_distinct_ids() -> None:
    para = " ".join(f"Repeated paragraph sentence {i} with some words." for i in range(30))
    chunks = chunk_document(_doc(f"{para}\n\n{para}"), chunk_tokens=100, overlap=0)
    assert len({c.chunk_id for c in chunks}) == len(chunks)
