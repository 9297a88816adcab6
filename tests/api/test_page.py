"""The chat page in a real headless Chromium (Debian's package, driven by Playwright), against the real server."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from tests.conftest import LiveServer, make_settings

# Never a downloaded browser: the system package, installed by `make test` (see the Makefile's `chromium` target).
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VRAEM = "Why did the VRAEM faction attack in February?"
KEY = "team-key-0123456789abcdef"
METRICS_KEY = "metrics-key-0123456789abcdef"
ORCHARD = (
    "The Larkspur orchard lies on the north bank of the Vell river. "
    "Odile Marchetti planted the Larkspur orchard in 1911 with quince and medlar trees. "
    "Her grandson Teodor sold the orchard to the town council in 1968. "
    "Today the council opens it to visitors every September for the quince harvest."
)
MILL = "The Vell mill was built in 1820 by the brothers Anselm and Jory Trask. It ground barley until 1931."


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `make chromium` (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, seeded_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(seeded_server.url + "/")
    yield page
    context.close()


def _keyed_server(base: Path, embedder, **settings: object) -> LiveServer:  # type: ignore[no-untyped-def]
    from api.app import create_app

    return LiveServer(create_app(make_settings(base / "data", **settings), embedder=embedder))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """A service with keys (tenant "team"), its collection empty: the page must ask for the key before anything."""
    with _keyed_server(
        tmp_path_factory.mktemp("keyed"), embedder, api_keys=f"team:{KEY}", metrics_key=METRICS_KEY
    ) as server:
        yield server


@pytest.fixture
def keyed_page(browser: Browser, keyed_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(keyed_server.url + "/")
    yield page
    context.close()


def _drop(page: Page, files: dict[str, str]) -> None:
    """Drop files on the drop zone as a user would drag them from a file manager (one DataTransfer, several files)."""
    page.evaluate(
        """(files) => {
            const data = new DataTransfer();
            for (const [name, text] of Object.entries(files)) data.items.add(new File([text], name, {type: 'text/plain'}));
            document.getElementById('dropzone').dispatchEvent(
                new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        files,
    )


def test_page_streams_answer_and_citation_highlights_quote(page: Page, seeded_server: LiveServer) -> None:
    page.fill("#question", VRAEM)
    page.click("#send")
    answer = page.locator("#messages li.assistant").last
    expect(answer.locator(".answer-text a.marker").first).to_be_visible()
    expected = httpx.post(f"{seeded_server.url}/ask", json={"question": VRAEM}, timeout=60).json()
    expect(answer.locator(".answer-text")).to_have_text(expected["answer"])
    markers = answer.locator(".answer-text a.marker")
    assert markers.count() == len(expected["citations"]) >= 1

    # The last citation: with several, a click on another than the first must still find its own quote.
    second = expected["citations"][-1]
    markers.nth(markers.count() - 1).click()
    highlight = page.locator("#source-text mark#highlight")
    expect(highlight).to_have_text(second["quote"])
    expect(page.locator("#source-title")).to_have_text(second["source"])
    expect(highlight).to_be_in_viewport()
    # The highlight is exactly text[start:end] of the stored document, found by offsets, not by search.
    before = page.evaluate("document.getElementById('highlight').previousSibling.textContent.length")
    assert before == second["start"]


def test_page_receives_the_answer_as_a_stream(page: Page) -> None:
    """The page's endpoint sends several delta events (word groups), not one blob."""
    deltas = page.evaluate(
        """async (question) => {
            const response = await fetch('/chat', {method: 'POST', headers: {'content-type': 'application/json'},
                body: JSON.stringify({message: question, stream: true})});
            const text = await response.text();
            return text.split('\\n\\n').filter((block) => block.startsWith('event: delta')).length;
        }""",
        VRAEM,
    )
    assert deltas > 3


def test_page_followup_in_same_conversation(page: Page) -> None:
    page.fill("#question", "Who is Alipio?")
    page.click("#send")
    expect(page.locator("#messages li.assistant").nth(0).locator("a.marker").first).to_be_visible()
    page.fill("#question", "what about Gabriel?")
    page.click("#send")
    second = page.locator("#messages li.assistant").nth(1)
    expect(second.locator(".searched")).to_have_text("Searched for: Who is Gabriel?")
    expect(second.locator(".citations")).to_contain_text("alias \u201cGabriel,\u201d")


def test_page_shows_no_answer_state(page: Page, seeded_server: LiveServer) -> None:
    page.fill("#question", "What is the capital of France?")
    page.click("#send")
    item = page.locator("#messages li.no-answer")
    expect(item.locator(".refusal")).to_contain_text("No answer found in the documents.")
    expect(item.locator("a.marker")).to_have_count(0)
    refused = httpx.post(f"{seeded_server.url}/ask", json={"question": "What is the capital of France?"}, timeout=60)
    confidence = refused.json()["confidence"]
    assert confidence is not None
    expect(item.locator(".confidence")).to_have_text(f"Confidence: {int(confidence * 100 + 0.5)}%")


def test_page_shows_errors_from_the_server(page: Page) -> None:
    # Continuing a conversation that no longer exists: the server's 404 message is shown, not swallowed.
    page.evaluate("conversationId = 'deleted-conversation'")
    page.fill("#question", "Who is Alipio?")
    page.click("#send")
    error = page.locator("#messages li.error")
    expect(error).to_contain_text("no conversation with id")
    expect(error).to_contain_text("conversation_not_found")


def test_page_links_only_markers_of_the_answers_citations(page: Page) -> None:
    """A source's brackets arrive as parentheses and stay text; so does a bracket whose number cites nothing."""
    citation = {"n": 1, "doc_id": "d", "source": "review.txt", "quote": "in Togo [2], shown [12, 13].", "start": 0}
    answer = {
        "answer": "Albendazole worked in Togo (2), as shown (12, 13) (SD) (Box 2). [1] Not ours: [7] [12, 13].",
        "no_answer": False,
        "citations": [{**citation, "end": len(citation["quote"]), "score": 0.9}],
    }
    page.evaluate("(answer) => renderAnswer(addItem('assistant', ''), answer)", answer)
    text = page.locator("#messages li.assistant").last.locator(".answer-text")
    expect(text).to_have_text(answer["answer"])
    links = text.locator("a.marker")
    expect(links).to_have_count(1)
    expect(links).to_have_text("[1]")


def test_page_with_keys_asks_for_key_uploads_asks_cites_and_deletes(keyed_page: Page, keyed_server: LiveServer) -> None:
    page = keyed_page
    auth = {"authorization": f"Bearer {KEY}"}
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request) if request.url.startswith(keyed_server.url) else None)

    # The first call (the document list) answers 401: the page asks for the key, then sends it.
    expect(page.locator("#key-dialog")).to_be_visible()
    expect(page.locator("#key-message")).to_contain_text("This service needs an API key (HTTP 401)")
    page.fill("#api-key", KEY)
    page.click("#key-save")
    expect(page.locator("#key-dialog")).to_be_hidden()
    expect(page.locator("#doc-empty")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('rag-api-key')") == KEY

    # Two files dropped at once: one job each (the server answers 202 and the page polls /jobs/{id}), each to done
    # with a full progress bar, both listed.
    _drop(page, {"orchard.txt": ORCHARD, "mill.txt": MILL})
    jobs = page.locator("#jobs li.job")
    expect(jobs).to_have_count(2)
    expect(page.locator("#jobs li.job.done")).to_have_count(2)
    for n in range(2):
        expect(jobs.nth(n).locator(".job-status")).to_have_text(re.compile(r"^done (\d+)/\1 chunks?$"))
        bar = jobs.nth(n).locator("progress")
        assert bar.evaluate("(bar) => bar.value === bar.max && bar.max > 0")
    expect(page.locator("#doc-list li")).to_have_count(2)
    uploads = [r for r in sent if r.method == "POST" and r.url == keyed_server.url + "/documents"]
    assert len(uploads) == 2
    for request in uploads:
        assert request.headers.get("prefer") == "respond-async"
        assert request.headers.get("authorization") == f"Bearer {KEY}"
    stored = httpx.get(f"{keyed_server.url}/documents", headers=auth).json()["documents"]
    assert sorted(d["doc_id"] for d in stored) == ["mill.txt", "orchard.txt"]

    # The key is kept for the tab's session: a reload asks for nothing.
    page.reload()
    expect(page.locator("#doc-list li")).to_have_count(2)
    expect(page.locator("#key-dialog")).to_be_hidden()

    question = "Who planted the Larkspur orchard?"
    page.fill("#question", question)
    page.click("#send")
    answer = page.locator("#messages li.assistant").last
    expect(answer.locator(".answer-text a.marker").first).to_be_visible()
    expected = httpx.post(f"{keyed_server.url}/ask", json={"question": question}, headers=auth, timeout=60).json()
    assert not expected["no_answer"] and expected["confidence"] is not None
    expect(answer.locator(".confidence")).to_have_text(f"Confidence: {int(expected['confidence'] * 100 + 0.5)}%")
    citation = expected["citations"][0]
    answer.locator(".answer-text a.marker").first.click()
    expect(page.locator("#source-text mark#highlight")).to_have_text(citation["quote"])
    expect(page.locator("#source-title")).to_have_text("orchard.txt")
    expect(page.locator("#source-range")).not_to_contain_text("page")

    # Delete asks first: one click only arms the button, the second deletes.
    row = page.locator('#doc-list li[data-doc-id="orchard.txt"]')
    row.locator("button.delete").click()
    expect(row.locator("button.delete")).to_have_text("Delete?")
    listed = httpx.get(f"{keyed_server.url}/documents", headers=auth).json()["documents"]
    assert "orchard.txt" in [d["doc_id"] for d in listed]
    row.locator("button.delete").click()
    expect(row).to_have_count(0)
    expect(page.locator("#doc-list li")).to_have_count(1)
    listed = httpx.get(f"{keyed_server.url}/documents", headers=auth).json()["documents"]
    assert [d["doc_id"] for d in listed] == ["mill.txt"]


def test_page_wrong_key_shows_the_401_message(keyed_page: Page) -> None:
    page = keyed_page
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#api-key", "not-the-key-0123456789")
    page.click("#key-save")
    # Asked again, saying why: the server's own 401 message.
    expect(page.locator("#key-message")).to_contain_text("The key was refused (HTTP 401): unknown API key")
    expect(page.locator("#key-dialog")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('rag-api-key')") is None
    page.fill("#api-key", KEY)
    page.click("#key-save")
    expect(page.locator("#key-dialog")).to_be_hidden()
    expect(page.locator("#notice")).to_be_hidden()


def test_page_shows_403_for_a_key_that_may_not_call_the_route(keyed_page: Page) -> None:
    """The operators' metrics key is a real key that tenant routes refuse with 403: the page says so, plainly."""
    page = keyed_page
    page.fill("#api-key", METRICS_KEY)
    page.click("#key-save")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Could not list the documents: Refused (HTTP 403): the metrics key")
    expect(page.locator("#key-dialog")).to_be_hidden()


def test_page_shows_429_with_retry_after(browser: Browser, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    # Two calls a minute: the page's document list and one question; the second question is refused.
    with _keyed_server(tmp_path, embedder, api_keys=f"team:{KEY}", rate_limit_per_minute=2) as server:
        context = browser.new_context()
        context.add_init_script(f"sessionStorage.setItem('rag-api-key', '{KEY}')")
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server.url + "/")
        expect(page.locator("#doc-empty")).to_be_visible()
        for _ in range(2):
            page.fill("#question", "Who planted the orchard?")
            page.click("#send")
            expect(page.locator("#send")).to_be_enabled()
        error = page.locator("#messages li.error").last
        expect(error).to_contain_text("Too many requests (HTTP 429)")
        expect(error).to_contain_text(re.compile(r"try again in \d+ s \(Retry-After\)"))
        expect(page.locator("#key-dialog")).to_be_hidden()
        context.close()


def test_page_follows_an_upload_job_with_progress(page: Page) -> None:
    """POST /documents answers 202 and the page polls status_url. The real server's jobs are followed by the test
    above; here the browser serves the two job routes (page.route) so that a job held at 1/3 and a failed job are
    shown deterministically."""
    finish = {"now": False}
    polls: list[float] = []

    def accept(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        assert route.request.headers.get("prefer") == "respond-async"
        job = "bad" if b'filename="scan.pdf"' in (route.request.post_data_buffer or b"") else "good"
        route.fulfill(status=202, json={"job_id": job, "status": "queued", "status_url": f"/jobs/{job}"})

    def status(route: Route) -> None:
        job = route.request.url.rsplit("/", 1)[1]
        if job == "good":
            polls.append(time.monotonic())
        body: dict[str, object] = {"job_id": job, "status": "running", "documents": []}
        body["progress"] = {"done": 1, "total": 3, "unit": "chunks"}
        if job == "bad":
            body.update(status="failed", error={"code": "invalid_input", "message": "scan.pdf has no text layer"})
        elif finish["now"]:
            body.update(status="done", progress={"done": 3, "total": 3, "unit": "chunks"})
        route.fulfill(json=body)

    page.route("**/documents", accept)
    page.route("**/jobs/*", status)
    page.set_input_files(
        "#file-input",
        files=[
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Some notes."},
            {"name": "scan.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4"},
        ],
    )
    good = page.locator("#jobs li.job", has_text="notes.txt")
    bad = page.locator("#jobs li.job", has_text="scan.pdf")
    expect(good.locator(".job-status")).to_have_text("running 1/3 chunks")
    expect(good.locator("progress")).to_have_js_property("value", 1)
    expect(good.locator("progress")).to_have_js_property("max", 3)
    expect(bad).to_have_class(re.compile(r"\bfailed\b"))
    expect(bad.locator(".job-status")).to_have_text("failed: scan.pdf has no text layer (invalid_input)")
    expect(good).to_have_class(re.compile(r"\brunning\b"))
    finish["now"] = True
    expect(good).to_have_class(re.compile(r"\bdone\b"))
    expect(good.locator("progress")).to_have_js_property("value", 3)
    gaps = [b - a for a, b in zip(polls, polls[1:], strict=False)]
    assert gaps and min(gaps) > 0.3, gaps  # polled about every 500 ms, not in a tight loop


def test_page_shows_the_servers_upload_error(page: Page) -> None:
    page.set_input_files(
        "#file-input", files=[{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}]
    )
    job = page.locator("#jobs li.job", has_text="tool.exe")
    expect(job).to_have_class(re.compile(r"\bfailed\b"))
    expect(job.locator(".job-status")).to_contain_text("unsupported file type .exe: send one of")


def test_page_names_the_page_of_a_pdf_citation(page: Page, seeded_server: LiveServer) -> None:
    """A citation with `page` (PDFs) names it where the source opens; the quote is still found by offsets."""
    answer = httpx.post(f"{seeded_server.url}/ask", json={"question": VRAEM}, timeout=60).json()
    citation = {**answer["citations"][0], "page": 3}
    page.evaluate("(answer) => renderAnswer(addItem('assistant', ''), answer)", {**answer, "citations": [citation]})
    link = page.locator("#messages li.assistant").last.locator(".citations a.marker")
    expect(link).to_have_text(f"{citation['source']}, page 3")
    link.click()
    expect(page.locator("#source-range")).to_have_text(
        f"[{citation['n']}] page 3, characters {citation['start']}\u2013{citation['end']}"
    )
    expect(page.locator("#source-text mark#highlight")).to_have_text(citation["quote"])
