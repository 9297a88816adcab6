"""The chat page in a real headless Chromium (Debian's package, driven by Playwright), against the real server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import LiveServer

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


def test_page_shows_no_answer_state(page: Page) -> None:
    page.fill("#question", "What is the capital of France?")
    page.click("#send")
    item = page.locator("#messages li.no-answer")
    expect(item).to_contain_text("No answer")
    expect(item.locator("a.marker")).to_have_count(0)


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
