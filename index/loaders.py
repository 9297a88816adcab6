"""Load .txt, .md, .html and .pdf files into Documents (their text normalised once, by Document.from_text
or, page by page, Document.from_pages)."""

from __future__ import annotations

from pathlib import Path

from rag.errors import UnsupportedFile
from rag.types import Document

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


class LoadError(Exception):
    """A file that cannot be read as text: reported by name and skipped."""


def load_document(path: Path, *, doc_id: str, source: str, root: str = "") -> Document:
    """Load a supported file as a Document; raise LoadError or UnsupportedFile."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UnsupportedFile(f"{path}: unsupported type {suffix or '(none)'}; supported: {sorted(SUPPORTED)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if suffix == ".pdf":
        pages, title = _pdf_pages(path, data)
        document = Document.from_pages(doc_id=doc_id, source=source, pages=pages, title=title, root=root)
    else:
        raw = _decode(path, data)
        title = ""
        if suffix in {".html", ".htm"}:
            raw, title = _html_text(raw)
        document = Document.from_text(doc_id=doc_id, source=source, text=raw, title=title, root=root)
    if not document.text:
        raise LoadError(f"{path}: no text found")
    return document


def document_from_bytes(name: str, data: bytes, *, doc_id: str, source: str) -> Document:
    """Load an uploaded file's bytes as a Document, dispatching on the name's suffix like load_document."""
    import tempfile

    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return load_document(path, doc_id=doc_id, source=source)
        except (LoadError, UnsupportedFile) as exc:
            raise type(exc)(str(exc).replace(str(path), name)) from exc


def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError(f"{path}: binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from exc


def _html_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    return soup.get_text("\n"), title


def _pdf_pages(path: Path, data: bytes) -> tuple[list[str], str]:
    """Each page's text (Document.from_pages joins them and keeps where each begins) and the title."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        metadata = reader.metadata
        title = str((metadata.get("/Title", "") if metadata else "") or "")
    except (PdfReadError, ValueError, KeyError) as exc:
        raise LoadError(f"{path}: not a readable PDF ({exc})") from exc
    if not any(p.strip() for p in pages):
        raise LoadError(f"{path}: PDF has no extractable text (scanned?)")
    return pages, title
