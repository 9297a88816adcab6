"""Pages of PDFs over HTTP: a real three-page PDF uploaded, asked about, its citations and passages naming pages."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.factory import open_store
from rag.text import sentence_spans
from rag.types import Document
from tests.conftest import make_settings
from tests.pdfs import pdf_file

# Each page's lines, as a PDF's text operators draw them. Page 1 ends on a hyphenated word and page 2 on a word
# without a full stop: neither may glue to the next page's first word.
PAGES = [
    [
        "Copper mining in Zambia began in the 1920s.",
        "The Copperbelt railway carried the ore to the port of Beira.",
        "Engineers measured the heat of the smelters with thermo-",
    ],
    [
        "dynamic tables printed in London.",
        "Lake Tanganyika holds seventeen percent of the fresh water on Earth.",
        "The lake is home to hundreds of species of cichlid fish.",
        "Its oldest samples are stored in the Mpulungu vault",
    ],
    [
        "Beryllium traces were found in the sediment cores.",
        "The Kariba dam on the Zambezi river was completed in 1959.",
        "Its reservoir displaced fifty seven thousand Tonga people.",
    ],
]
# (last word of a page, first word of the next): never one word in the stored text or in a quote.
BOUNDARIES = [("thermo-", "dynamic"), ("vault", "Beryllium")]


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A text PDF of several pages, each drawing its lines one under another (built by hand: no extra package)."""
    fonts = "<< /Font << /F1 3 0 R >> >>"
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the pages' numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for lines in pages:
        drawn = " T* ".join(f"({line}) Tj" for line in lines)
        stream = f"BT /F1 11 Tf 14 TL 72 720 Td {drawn} ET".encode()
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
        contents = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {contents} 0 R "
            f"/Resources {fonts} >>".encode()
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    return pdf_file(objects)


@pytest.fixture
def client(tmp_path: Path, embedder) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        response = client.post("/documents", files={"file": ("atlas.pdf", pdf_bytes(PAGES), "application/pdf")})
        assert response.status_code == 201, response.text
        yield client


def _page_of(starts: list[int], offset: int) -> int:
    return bisect_right(starts, offset)


def _glued(text: str) -> list[str]:
    return [a + b for a, b in BOUNDARIES if re.search(re.escape(a) + r"[ \t]*" + re.escape(b), text)]


def test_pdf_document_exposes_each_page_range_and_keeps_page_breaks(client: TestClient) -> None:
    document = client.get("/documents/atlas.pdf").json()
    text = document["text"]
    assert [p["page"] for p in document["pages"]] == [1, 2, 3]
    for page, lines in zip(document["pages"], PAGES, strict=True):
        assert text[page["start"] : page["end"]] == "\n".join(lines)
    assert not _glued(text), "a page's last word ran into the next page's first"
    # The break between pages is a blank line: a sentence (and a word) ends there.
    assert "thermo-\n\ndynamic" in text and "vault\n\nBeryllium" in text
    ranges = [(p["start"], p["end"]) for p in document["pages"]]
    for start, end in sentence_spans(text):
        assert any(lo <= start and end <= hi for lo, hi in ranges), f"sentence across pages: {text[start:end]!r}"


@pytest.mark.parametrize(
    ("question", "page", "needle"),
    [
        ("How much of the fresh water on Earth does Lake Tanganyika hold?", 2, "seventeen percent"),
        ("When was the Kariba dam on the Zambezi completed?", 3, "1959"),
    ],
)
def test_pdf_citations_name_the_page_of_their_quote(client: TestClient, question: str, page: int, needle: str) -> None:
    document = client.get("/documents/atlas.pdf").json()
    text = document["text"]
    starts = [p["start"] for p in document["pages"]]
    answer = client.post("/ask", json={"question": question}).json()
    assert answer["no_answer"] is False, answer
    cited = [c for c in answer["citations"] if needle in c["quote"]]
    assert cited, answer["citations"]
    for c in answer["citations"]:
        assert text[c["start"] : c["end"]] == c["quote"]
        assert c["page"] == _page_of(starts, c["start"])
        assert not _glued(c["quote"])
    assert {c["page"] for c in cited} == {page}
    assert answer["passages"]
    for p in answer["passages"]:
        assert text[p["start"] : p["end"]] == p["text"]
        assert p["page"] == _page_of(starts, p["start"]) and p["page"] is not None
    # The other interfaces carry the same Answer: /chat and the OpenAI-compatible endpoint name the page too.
    chat = client.post("/chat", json={"message": question}).json()
    assert {c["page"] for c in chat["citations"] if needle in c["quote"]} == {page}
    completion = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]})
    citations = completion.json()["choices"][0]["message"]["citations"]
    assert {c["page"] for c in citations if needle in c["quote"]} == {page}


def test_text_citations_and_passages_have_no_page(client: TestClient) -> None:
    added = client.post("/documents", json={"doc_id": "notes.txt", "text": "The Victoria Falls are 108 metres high."})
    assert added.status_code == 201
    answer = client.post("/ask", json={"question": "How high are the Victoria Falls?"}).json()
    assert answer["citations"] and answer["citations"][0]["doc_id"] == "notes.txt"
    assert [c["page"] for c in answer["citations"] if c["doc_id"] == "notes.txt"] == [None]
    assert all(p["page"] is None for p in answer["passages"] if p["doc_id"] == "notes.txt")
    assert client.get("/documents/notes.txt").json()["pages"] == []


def test_pdf_indexed_before_pages_were_kept_answers_with_page_null(client: TestClient, tmp_path: Path) -> None:
    store = open_store(make_settings(tmp_path / "data"))
    # A record as an older version wrote it: no page starts at all.
    store._docs.update(ids=["atlas.pdf"], metadatas=[{"page_starts": None}])
    store.bump_generation(["atlas.pdf"])  # a change to that document, as every write logs it
    assert "page_starts" not in store._docs.get(ids=["atlas.pdf"])["metadatas"][0]
    answer = client.post("/ask", json={"question": "When was the Kariba dam on the Zambezi completed?"})
    assert answer.status_code == 200
    assert answer.json()["citations"] and all(c["page"] is None for c in answer.json()["citations"])
    assert client.get("/documents/atlas.pdf").json()["pages"] == []


def test_document_from_pages_skips_empty_pages_without_giving_them_text() -> None:
    document = Document.from_pages(doc_id="d", source="d.pdf", pages=["  ", "One.\n", "", "Two  words.", "\n"])
    assert document.text == "One.\n\nTwo words."
    # Pages 1 and 3 hold nothing: each begins where the next page with text does (5 ends the document).
    assert document.page_starts == (0, 0, 6, 6, 16)
    assert [_page_of(list(document.page_starts), o) for o in (0, 3, 4, 5, 6, 15)] == [2, 2, 2, 2, 4, 4]


def test_cli_indexes_a_pdf_folder_and_names_the_cited_page(tmp_path: Path) -> None:
    from tests.index.test_pipeline import _rag

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "atlas.pdf").write_bytes(pdf_bytes(PAGES))
    indexed = _rag("index", str(folder), data_dir=tmp_path / "data")
    assert indexed.returncode == 0, indexed.stderr
    asked = _rag("ask", "When was the Kariba dam on the Zambezi completed?", data_dir=tmp_path / "data")
    assert asked.returncode == 0, asked.stderr
    assert re.search(r"\[1\] \S*atlas\.pdf \(page 3, chars \d+-\d+\)", asked.stdout), asked.stdout
