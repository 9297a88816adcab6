"""Loaders keep their work bounded: a document's text stops at the character cap (a PDF page by page, HTML as it
is read), and HTML is read in linear time whatever its nesting or its malformed markup."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import pytest

from index.loaders import LoadError, document_from_bytes, load_document
from rag.errors import DocumentTooLarge
from rag.text import normalize_text
from tests.conftest import index_folder, make_settings
from tests.pdfs import pdf_file

CAP = 1_000_000
# Bounded reading takes about 1 s (bombs) or 0.1-0.4 s (HTML) on an idle 2-core machine; unbounded, these inputs
# took minutes (or 40 s for the quadratic HTML). The bounds leave room for a machine shared with other test runs.
BOUNDED_S = 10
LINEAR_S = 5


def pdf_bytes(pages: list[bytes], *, compress: bool = True, form: bytes | None = None) -> bytes:
    """A PDF built by hand: one page per content stream (Helvetica as /F1, and ``form`` as the form XObject /X0 if
    given), its streams Flate-compressed unless told not to."""
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        _stream(
            form or b"",
            compress,
            b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>",
        ),
    ]
    xobject = b" /XObject << /X0 4 0 R >>" if form is not None else b""
    for i, content in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {6 + 2 * i} 0 R ".encode()
            + b"/Resources << /Font << /F1 3 0 R >>"
            + xobject
            + b" >> >>"
        )
        objects.append(_stream(content, compress))
    return pdf_file(objects)


def _stream(content: bytes, compress: bool, extra: bytes = b"") -> bytes:
    data = zlib.compress(content, 9) if compress else content
    flate = b" /Filter /FlateDecode" if compress else b""
    return b"<< /Length " + str(len(data)).encode() + flate + extra + b" >>\nstream\n" + data + b"\nendstream"


def text_page(text: str, repeat: int = 1) -> bytes:
    """A page content stream that shows ``text`` ``repeat`` times (one Tj each)."""
    return b"BT /F1 12 Tf 72 712 Td\n" + f"({text}) Tj\n".encode() * repeat + b"ET\n"


def pdf_bomb() -> bytes:
    """About 20 KB of PDF whose one page shows 40 million characters: it draws a form of 40,000 characters 1,000
    times (pypdf parses the form again at each drawing)."""
    return pdf_bytes([b"q /X0 Do Q\n" * 1_000], form=text_page("A" * 40, repeat=1_000))


def pdf_stream_bomb() -> bytes:
    """About 150 KB of PDF whose one page shows 40 million characters from 44 MB of compressed Tj operators."""
    return pdf_bytes([text_page("A" * 64, repeat=620_000)])


@pytest.mark.parametrize(("make", "size"), [(pdf_bomb, 70_000), (pdf_stream_bomb, 200_000)], ids=["form", "stream"])
def test_pdf_bomb_stops_at_the_char_cap_in_seconds(make, size: int) -> None:  # type: ignore[no-untyped-def]
    data = make()
    assert len(data) < size
    started = time.perf_counter()
    with pytest.raises(DocumentTooLarge) as caught:
        document_from_bytes("bomb.pdf", data, doc_id="bomb.pdf", source="bomb.pdf", max_chars=CAP)
    assert time.perf_counter() - started < BOUNDED_S
    assert "1,000,000" in caught.value.message and "RAG_MAX_DOCUMENT_CHARS" in caught.value.message
    assert "bomb.pdf" in caught.value.message


def test_pdf_stops_reading_pages_once_past_the_cap() -> None:
    # 40 pages of 60,000 characters each against a cap of 200,000: reading stops at page 4.
    data = pdf_bytes([text_page(f"page {i:02d} " + "lorem ipsum dolor " * 4, repeat=700) for i in range(40)])
    with pytest.raises(DocumentTooLarge) as caught:
        document_from_bytes("long.pdf", data, doc_id="long.pdf", source="long.pdf", max_chars=200_000)
    assert "page 4 of 40" in caught.value.message, caught.value.message


def test_pdf_under_the_cap_keeps_every_page() -> None:
    data = pdf_bytes([text_page(f"Page {n} says hello.") for n in ("one", "two", "three")])
    document = document_from_bytes("three.pdf", data, doc_id="three.pdf", source="three.pdf", max_chars=CAP)
    assert document.text == "Page one says hello.\n\nPage two says hello.\n\nPage three says hello."


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"BT /F1 12 Tf (" + b"A" * 100_000_000 + b") Tj ET", "LimitReachedError"),  # past pypdf's 75 MB
        (b"BT /F1 12 Tf " + b"[" * 100_000 + b"]" * 100_000 + b" TJ ET", "RecursionError"),
    ],
    ids=["decompresses-past-75MB", "nested-100k-deep"],
)
def test_hostile_pdf_is_a_load_error(content: bytes, error: str) -> None:
    with pytest.raises(LoadError) as caught:
        document_from_bytes("hostile.pdf", pdf_bytes([content]), doc_id="h", source="h", max_chars=CAP)
    assert str(caught.value).startswith("hostile.pdf: not a readable PDF") and error in str(caught.value)


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_text_over_the_cap_is_too_large(suffix: str) -> None:
    data = ("word " * 30_000).encode()
    with pytest.raises(DocumentTooLarge) as caught:
        document_from_bytes(f"a{suffix}", data, doc_id="a", source="a", max_chars=100_000)
    assert "149,999 characters" in caught.value.message and "100,000" in caught.value.message
    assert document_from_bytes(f"a{suffix}", data, doc_id="a", source="a", max_chars=150_000).text


def test_load_document_applies_the_cap_to_files_too(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 30_000, encoding="utf-8")
    with pytest.raises(DocumentTooLarge):
        load_document(path, doc_id="big.txt", source=str(path), max_chars=100_000)


def test_rag_index_skips_a_file_over_the_cap_and_indexes_the_rest(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "small.txt").write_text("Reactors run on molten salt.", encoding="utf-8")
    (folder / "big.txt").write_text("Reactors run on molten salt. " * 100, encoding="utf-8")
    report = index_folder(make_settings(tmp_path / "data", max_document_chars=1000), embedder, folder)
    assert report.added == 1
    assert len(report.skipped) == 1 and "big.txt" in report.skipped[0] and "RAG_MAX_DOCUMENT_CHARS" in report.skipped[0]


def test_html_200k_nested_divs_load_in_linear_time() -> None:
    html = "<html><body>" + "<div>" * 200_000 + "deep" + "</div>" * 200_000 + "</body></html>"
    started = time.perf_counter()
    document = document_from_bytes("deep.html", html.encode(), doc_id="deep", source="deep", max_chars=CAP)
    assert document.text == "deep"
    assert time.perf_counter() - started < LINEAR_S


def test_html_over_the_cap_stops_as_it_reads() -> None:
    html = "<div>lorem ipsum " * 200_000  # 2.8 MB, 2.4 million characters of text, every div left open
    started = time.perf_counter()
    with pytest.raises(DocumentTooLarge) as caught:
        document_from_bytes("wide.html", html.encode(), doc_id="wide", source="wide", max_chars=CAP)
    assert time.perf_counter() - started < LINEAR_S
    assert "RAG_MAX_DOCUMENT_CHARS" in caught.value.message


@pytest.mark.parametrize(
    "html",
    [
        "<a" * 100_000,  # quadratic in the standard library's HTMLParser (Python 3.11): 14 s for 60k
        "</" * 200_000,
        "<!" * 200_000,
        "<?" * 200_000,
        "<![" * 100_000,  # an AssertionError in HTMLParser
        "<a b='" + "x" * 1_000_000,
        "<!--" + "x" * 1_000_000,
        "<script>" + "</" * 200_000,
        "<p>" * 100_000 + "</b>" * 100_000,
    ],
    ids=["open-tags", "end-tags", "decls", "pis", "marked-sections", "open-quote", "open-comment", "script", "p-b"],
)
def test_html_malformed_markup_reads_in_linear_time(html: str) -> None:
    started = time.perf_counter()
    try:
        document_from_bytes("bad.html", html.encode(), doc_id="bad", source="bad", max_chars=CAP)
    except LoadError as exc:
        assert "no text" in str(exc)
    assert time.perf_counter() - started < LINEAR_S


HTML_SAMPLES = [
    "<html><head><title>Reactors</title><style>p{color:red}</style><script>var x=1;</script></head>"
    "<body><h1>Alpha</h1><p>Alpha reactors run on <b>molten</b> salt.</p></body></html>",
    "<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset='utf-8'>\n    <title>  A &amp; B  </title>\n  </head>\n"
    "  <body>\n    <!-- a comment -->\n    <p>Caf&eacute; &lt;menu&gt; &#8212; &#x41;&#65; &copy 2024 AT&T</p>\n"
    "    <ul>\n      <li>one</li>\n      <li>two<br>three<br/>four</li>\n    </ul>\n"
    "    <noscript><p>enable scripts</p></noscript><template><p>hidden</p></template>\n"
    "    <pre>  keep\n   this  </pre>\n    <img src='x.png' alt='a picture'><hr>\n"
    "    <p>Unclosed paragraph\n    <p>Another one\n    <div>nested <span>deep <em>deeper</em></span></div>\n"
    "  </body>\n</html>\n",
    "<p>no html or body</p><p>second &quot;quoted&quot;</p>",
    "plain text without any markup at all",
    "<body><script type='text/javascript'>if (a < b && c > d) { document.write('<p>x</p>'); }</script>"
    "<p>after script</p><style>\n.a > .b { color: red }\n</style><p>after style</p></body>",
    "<title>First</title><title>Second</title><p>body</p>",
    "<div><p>a</div><p>b</p></b></i><p>c",
    "<table><tr><td>cell 1</td><td>cell 2</td></tr><tr><td>cell 3</td></tr></table>",
    "<p>x<![CDATA[ raw <data> ]]>y</p><?php echo 1; ?><p>z</p>",
    "<P CLASS=x>Upper case</P><SCRIPT>hidden()</SCRIPT><Title>Mixed</Title>",
    "<p title='a > b'>attribute with a bracket</p><p data-x=\"<p>\">second</p>",
    "<p>1 < 2 and 3 > 2</p><p>a <b c</p>",
]


@pytest.mark.parametrize("html", HTML_SAMPLES, ids=range(len(HTML_SAMPLES)))
def test_html_text_matches_beautifulsoup(html: str) -> None:
    # The reader replaced BeautifulSoup (quadratic and recursive on hostile markup); on ordinary pages it must
    # store the same text and title, so re-indexing a folder does not re-embed unchanged HTML.
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    expected = normalize_text(soup.get_text("\n"))
    document = document_from_bytes("page.html", html.encode(), doc_id="page", source="page", max_chars=CAP)
    assert (document.text, document.title) == (expected, title)
