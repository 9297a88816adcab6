"""HTML to text in one linear pass, without a tree: the text BeautifulSoup's ``get_text("\\n")`` gave, bounded.

BeautifulSoup on the standard library's HTMLParser took 31 s on 200k nested divs and is quadratic on malformed
markup such as ``<a<a<a...`` (Python 3.11's HTMLParser rescans the rest of the document at every ``<``; 60k of them
took 14 s), and raised AssertionError on ``<![<![``. Here every construct either ends where its end is found or, when
it has none, ends the document (as HTML's own tokenizer drops an unterminated tag at the end of the input), so no
byte is scanned twice; open elements are a list, not a recursion; and reading stops as soon as the text is past
``max_chars``.

What counts as text is what BeautifulSoup counted: every run of characters between two pieces of markup is one
string (entities decoded; an all-whitespace run becomes one space or newline, except inside <pre> and <textarea>),
joined with newlines; nothing inside script, style, noscript, template, rt or rp; comments, declarations and
processing instructions are not text, CDATA sections are. The first <title> outside those is the title, and its
text is not part of the body.
"""

from __future__ import annotations

import re
from html import unescape

# Elements that never hold content (BeautifulSoup's list: HTML5's, and older ones).
VOID = frozenset(
    "area base br col embed hr img input keygen link menuitem meta param source track wbr "
    "basefont bgsound command frame image isindex nextid spacer".split()
)
# Elements whose text is not the document's.
HIDDEN = frozenset({"script", "style", "noscript", "template", "rt", "rp"})
# Elements whose content is raw text, not markup, up to their end tag (HTMLParser's CDATA_CONTENT_ELEMENTS).
RAW = frozenset({"script", "style"})
PRESERVE = frozenset({"pre", "textarea"})
_ASCII_SPACES = " \n\t\f\r"

# A start tag: its name, then attributes (a quoted value may hold '>'), possessive throughout so that a tag without
# its '>' fails after one scan instead of backtracking.
_START_TAG = re.compile(r"""<([a-zA-Z][^\s/>]*+)((?:[^>"'=]++|=\s*+(?:"[^"]*+"|'[^']*+'|[^\s>"']*+)|["'=])*+)>""")
_RAW_END = {name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in RAW}


class TextTooLong(Exception):
    """Reading stopped: the text is past ``max_chars`` characters (not counting whitespace) at character ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


def html_text(html: str, *, max_chars: int | None = None) -> tuple[str, str]:
    """Return (text, title) of an HTML document; raise TextTooLong once its text passes ``max_chars``.

    The count that stops reading is of non-whitespace characters, which normalising never removes, so a document
    stopped here is over the cap once normalised too.
    """
    body = _Strings(max_chars)
    title: _Strings | None = None  # the first <title>'s strings, while it is open
    title_depth = 0  # len(stack) with the title open
    title_seen = False
    title_text = ""
    stack: list[str] = []  # names of the open elements, innermost last
    open_count: dict[str, int] = {}
    hidden = 0  # open elements in HIDDEN
    preserve = 0  # open elements in PRESERVE
    n = len(html)
    i = 0
    while i < n:
        lt = html.find("<", i)
        if lt < 0:
            lt = n
        target = body if title is None else title
        if lt > i and not hidden:
            target.add(unescape(html[i:lt]), preserve=preserve > 0, at=i)
        if lt >= n:
            break
        kind = _markup_kind(html, lt)
        if kind == "":  # a '<' that starts no markup ("1 < 2", "<3") is text
            if not hidden:
                target.add("<", preserve=preserve > 0, at=lt)
            i = lt + 1
            continue
        target.boundary()
        if kind == "start":
            match = _START_TAG.match(html, lt)
            if match is None:
                break  # a tag without its '>' runs to the end of the document
            i = match.end()
            name = match.group(1).lower()
            if name in RAW:
                # Script and style text is never the document's; their end tag is then read as any other.
                end = _RAW_END[name].search(html, i)
                i = end.start() if end else n
            elif name not in VOID and not match.group(2).endswith("/"):  # void and self-closing ones never open
                stack.append(name)
                open_count[name] = open_count.get(name, 0) + 1
                hidden += name in HIDDEN
                preserve += name in PRESERVE
                if name == "title" and not title_seen and not hidden:
                    title, title_depth, title_seen = _Strings(max_chars), len(stack), True
        elif kind == "end":
            close = html.find(">", lt + 2)
            if close < 0:
                break
            i = close + 1
            name = _END_NAME.match(html, lt + 2, close)
            if name is None or not open_count.get(name.group().lower()):
                continue  # a bogus "</ >", or nothing to close: ignored, as BeautifulSoup did
            wanted = name.group().lower()
            while stack:
                top = stack.pop()
                open_count[top] -= 1
                hidden -= top in HIDDEN
                preserve -= top in PRESERVE
                if title is not None and len(stack) < title_depth:
                    title_text, title = title.joined_stripped(), None
                if top == wanted:
                    break
        elif kind == "cdata":
            close = html.find("]]>", lt + 9)
            if close < 0:
                break
            if not hidden:
                target.add(html[lt + 9 : close], preserve=preserve > 0, at=lt)
                target.boundary()
            i = close + 3
        else:  # a comment ("-->"), or a declaration or processing instruction (">")
            close = html.find("-->", lt + 4) if kind == "comment" else html.find(">", lt + 2)
            if close < 0:
                break
            i = close + (3 if kind == "comment" else 1)
    if title is not None:  # never closed: it ran to the end of the document
        title_text = title.joined_stripped()
    return body.joined(), title_text


def _markup_kind(html: str, lt: int) -> str:
    """What the '<' at ``lt`` opens: start, end, comment, cdata, decl (also '<?'), or "" for none."""
    nxt = html[lt + 1 : lt + 2]
    if nxt.isascii() and nxt.isalpha():
        return "start"
    if nxt == "/":
        return "end"
    if nxt == "!":
        if html.startswith("<!--", lt):
            return "comment"
        return "cdata" if html.startswith("<![CDATA[", lt) else "decl"
    return "decl" if nxt == "?" else ""


_END_NAME = re.compile(r"[a-zA-Z][^\s/>]*")


class _Strings:
    """Strings as BeautifulSoup made them: pieces between two markups join into one, all-whitespace ones shrink."""

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self.strings: list[str] = []
        self.current: list[str] = []
        self.current_preserve = False
        self.chars = 0  # non-whitespace characters so far

    def add(self, piece: str, *, preserve: bool, at: int) -> None:
        self.current.append(piece)
        self.current_preserve = self.current_preserve or preserve
        if self.max_chars is not None:
            self.chars += len(piece) - sum(piece.count(c) for c in _ASCII_SPACES)
            if self.chars > self.max_chars:
                raise TextTooLong(at)

    def boundary(self) -> None:
        if not self.current:
            return
        string = "".join(self.current)
        if not self.current_preserve and not string.strip(_ASCII_SPACES):
            string = "\n" if "\n" in string else " "
        self.strings.append(string)
        self.current = []
        self.current_preserve = False

    def joined(self) -> str:
        """The strings joined with newlines (``get_text("\\n")``)."""
        self.boundary()
        return "\n".join(self.strings)

    def joined_stripped(self) -> str:
        """The strings stripped, the empty ones dropped, joined with spaces (``get_text(" ", strip=True)``)."""
        self.boundary()
        return " ".join(s.strip() for s in self.strings if s.strip())
