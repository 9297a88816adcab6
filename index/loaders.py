"""Load .txt, .md, .html and .pdf files into Documents (their text normalised once, by Document.from_text
or, page by page, Document.from_pages).

Reading is bounded by ``max_chars`` (RAG_MAX_DOCUMENT_CHARS): a document whose normalised text is longer raises
DocumentTooLarge, and HTML and PDF stop being read as soon as their text is known to be past it, so a small file
that expands hugely (a PDF's compressed content streams) costs seconds, not minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag.errors import DocumentTooLarge, UnsupportedFile
from rag.text import normalize_text
from rag.types import Document

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}
# A PDF page's drawing instructions are parsed whole before any text comes out (14 MB took 6 s on 2 cores), so they
# are bounded too: at most this many bytes of them per character a document may have (text takes 2 to 5).
PDF_CONTENT_BYTES_PER_CHAR = 10


class LoadError(Exception):
    """A file that cannot be read as text: reported by name and skipped."""


def too_large(name: str, max_chars: int, *, chars: int | None = None, stopped: str = "") -> DocumentTooLarge:
    """The error for a document over the character cap: its size if known (``chars``), else where reading stopped."""
    size = f"is {chars:,} characters, over" if chars is not None else "is over"
    where = f"; reading stopped {stopped}" if stopped else ""
    return DocumentTooLarge(
        f"{name}: the document's text {size} the limit of {max_chars:,} characters per document "
        f"(RAG_MAX_DOCUMENT_CHARS{where}): split it into smaller documents, or raise RAG_MAX_DOCUMENT_CHARS"
    )


def check_size(document: Document, *, name: str, max_chars: int | None) -> Document:
    """Return ``document`` if its normalised text is within ``max_chars``; else raise DocumentTooLarge."""
    if max_chars is not None and len(document.text) > max_chars:
        raise too_large(name, max_chars, chars=len(document.text))
    return document


def load_document(path: Path, *, doc_id: str, source: str, root: str = "", max_chars: int | None = None) -> Document:
    """Load a supported file as a Document; raise LoadError, UnsupportedFile or DocumentTooLarge."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UnsupportedFile(f"{path}: unsupported type {suffix or '(none)'}; supported: {sorted(SUPPORTED)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if suffix == ".pdf":
        pages, title = _pdf_pages(path, data, max_chars)
        document = Document.from_pages(doc_id=doc_id, source=source, pages=pages, title=title, root=root)
    else:
        raw = _decode(path, data)
        title = ""
        if suffix in {".html", ".htm"}:
            raw, title = _html_text(path, raw, max_chars)
        document = Document.from_text(doc_id=doc_id, source=source, text=raw, title=title, root=root)
    if not document.text:
        raise LoadError(f"{path}: no text found")
    return check_size(document, name=str(path), max_chars=max_chars)


def document_from_bytes(name: str, data: bytes, *, doc_id: str, source: str, max_chars: int | None = None) -> Document:
    """Load an uploaded file's bytes as a Document, dispatching on the name's suffix like load_document."""
    import tempfile

    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return load_document(path, doc_id=doc_id, source=source, max_chars=max_chars)
        except (LoadError, UnsupportedFile, DocumentTooLarge) as exc:
            raise type(exc)(str(exc).replace(str(path), name)) from exc


def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError(f"{path}: binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from exc


def _html_text(path: Path, html: str, max_chars: int | None) -> tuple[str, str]:
    from index.markup import TextTooLong, html_text

    try:
        return html_text(html, max_chars=max_chars)
    except TextTooLong as exc:
        assert max_chars is not None
        raise too_large(str(path), max_chars, stopped=f"at character {exc.at:,} of {len(html):,}") from None


def _pdf_pages(path: Path, data: bytes, max_chars: int | None) -> tuple[list[str], str]:
    """Each page's text (Document.from_pages joins them and keeps where each begins) and the title."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        metadata = reader.metadata
        title = str((metadata.get("/Title", "") if metadata else "") or "")
        bound = _PdfBound(max_chars)
        pages: list[str] = []
        count = len(reader.pages)
        for number, page in enumerate(reader.pages, start=1):
            text = bound.page_text(page)
            if bound.stopped:
                assert max_chars is not None
                raise too_large(str(path), max_chars, stopped=f"at page {number} of {count}{bound.detail}")
            pages.append(text)
    except (PyPdfError, *_PDF_FAILURES) as exc:
        raise LoadError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    if not any(p.strip() for p in pages):
        raise LoadError(f"{path}: PDF has no extractable text (scanned?)")
    return pages, title


# How pypdf fails on bytes that are not a PDF it can read: its own errors (LimitReachedError for a stream that
# decompresses past 75 MB), and on hostile structure the built-in ones (RecursionError: arrays nested 100k deep).
_PDF_FAILURES = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)


class _StopPage(Exception):
    """Raised from pypdf's operator callback to stop reading a page once the document is past its bounds."""


class _PdfBound:
    """Keeps a PDF's reading within ``max_chars``: what a page shows is counted as pypdf reads it, operator by
    operator (one page can show 40 million characters), and the pages' normalised text is added up page by page;
    drawing instructions are bounded before pypdf parses them."""

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self.chars = 0  # normalised characters of the pages read so far (with their "\n\n" separators)
        self.content_bytes = 0
        self.stopped = False
        self.detail = ""  # more about why, for the message

    def page_text(self, page: Any) -> str:
        """The text of ``page``, or "" with ``stopped`` set once the document is past its bounds."""
        if self.max_chars is None:
            return str(page.extract_text() or "")
        contents = page.get_contents()
        self._add_content(len(contents.get_data()) if contents is not None else 0)
        forms = _form_sizes(page)
        # Shown text, spaces and all, is what the page holds once normalised, give or take: twice the room left
        # stops only pages that are over the cap in any reading (the exact count follows, page by page).
        room = 2 * (self.max_chars - self.chars) + 10_000
        shown = 0

        def visit(operator: bytes, operands: list[Any], *_: Any) -> None:
            nonlocal shown
            if operator in (b"Tj", b"'", b'"') and operands:
                shown += _shown_chars(operands[-1])
            elif operator == b"TJ" and operands and isinstance(operands[0], list):
                shown += sum(_shown_chars(item) for item in operands[0])
            elif operator == b"Do" and operands:
                self._add_content(forms.get(str(operands[0]), 0))
            if shown > room:
                self.stopped = True
            if self.stopped:  # raised again at the next operator: pypdf swallows what a form XObject raises
                raise _StopPage

        text = ""
        if not self.stopped:  # (the drawing instructions may be over already)
            try:
                text = str(page.extract_text(visitor_operand_before=visit) or "")
            except _StopPage:
                pass
        if self.stopped:
            return ""
        normalised = len(normalize_text(text))
        self.chars += normalised + (2 if normalised and self.chars else 0)
        self.stopped = self.chars > self.max_chars
        return text

    def _add_content(self, size: int) -> None:
        assert self.max_chars is not None
        self.content_bytes += size
        limit = PDF_CONTENT_BYTES_PER_CHAR * self.max_chars
        if self.content_bytes > limit and not self.stopped:
            self.stopped = True
            self.detail = f", past {limit:,} bytes of drawing instructions ({PDF_CONTENT_BYTES_PER_CHAR} a character)"


def _shown_chars(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 0


def _form_sizes(page: Any) -> dict[str, int]:
    """The size of each form XObject a page (or a form in it) may draw, by name: drawing one parses it again."""
    sizes: dict[str, int] = {}
    seen: set[int] = set()
    todo = [page.get("/Resources")]
    while todo:
        resources = todo.pop()
        try:
            resources = resources.get_object() if resources is not None else None
            xobjects = resources.get("/XObject") if resources is not None else None
            xobjects = xobjects.get_object() if xobjects is not None else None
        except (AttributeError, KeyError, ValueError):
            continue
        if not xobjects:
            continue
        for name, ref in xobjects.items():
            try:
                form = ref.get_object()
                if form.get("/Subtype") != "/Form" or id(form) in seen:
                    continue
                seen.add(id(form))
                sizes[str(name)] = max(sizes.get(str(name), 0), len(form.get_data()))
                todo.append(form.get("/Resources"))
            except (AttributeError, KeyError, ValueError):
                continue
    return sizes
