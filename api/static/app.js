// The chat page: streams answers from POST /chat (server-sent events), renders [n] as links to the cited passage,
// and shows the source document (GET /documents/{doc_id}) with the quote highlighted from its offsets.
"use strict";

const messages = document.getElementById("messages");
const form = document.getElementById("ask-form");
const input = document.getElementById("question");
const sendButton = document.getElementById("send");
const source = document.getElementById("source");
const documents = new Map(); // doc_id -> Promise of the document
let conversationId = null;

function addItem(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  if (text) li.textContent = text;
  messages.appendChild(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function errorMessage(body, status) {
  const detail = body && body.detail;
  if (detail && detail.message) return `${detail.message} (${detail.code || status})`;
  return `The request failed with HTTP ${status}.`;
}

function showError(li, message) {
  li.className = "error";
  li.textContent = "Error: " + message;
}

// Answer text with each [n] turned into a link that opens citation n. Only [n] with n among the answer's citations
// is a link: the server writes a source's own brackets as parentheses ("(2)", "(12, 13)"), which stay text.
function renderAnswer(li, answer) {
  li.textContent = "";
  li.className = answer.no_answer ? "assistant no-answer" : "assistant";
  const text = document.createElement("div");
  text.className = "answer-text";
  const byNumber = new Map(answer.citations.map((c) => [c.n, c]));
  let last = 0;
  for (const match of answer.answer.matchAll(/\[(\d+)\]/g)) {
    text.append(answer.answer.slice(last, match.index));
    const citation = byNumber.get(Number(match[1]));
    if (citation) {
      const link = document.createElement("a");
      link.href = "#";
      link.className = "marker";
      link.dataset.n = match[1];
      link.textContent = match[0];
      link.title = `${citation.source} (characters ${citation.start}-${citation.end})`;
      link.addEventListener("click", (event) => { event.preventDefault(); showCitation(citation); });
      text.append(link);
    } else {
      text.append(match[0]);
    }
    last = match.index + match[0].length;
  }
  text.append(answer.answer.slice(last));
  li.appendChild(text);
  if (answer.no_answer) {
    const note = document.createElement("div");
    note.className = "status";
    note.textContent = "No answer: the indexed documents do not say. Try rephrasing, or ask about something they cover.";
    li.appendChild(note);
  }
  if (answer.query) {
    const searched = document.createElement("div");
    searched.className = "searched";
    searched.textContent = `Searched for: ${answer.query}`;
    li.appendChild(searched);
  }
  if (answer.citations.length) {
    const list = document.createElement("ol");
    list.className = "citations";
    for (const c of answer.citations) {
      const item = document.createElement("li");
      item.value = c.n;
      const link = document.createElement("a");
      link.href = "#";
      link.className = "marker";
      link.textContent = c.source;
      link.addEventListener("click", (event) => { event.preventDefault(); showCitation(c); });
      item.append(link, ` \u201c${c.quote}\u201d`);
      list.appendChild(item);
    }
    li.appendChild(list);
  }
}

function fetchDocument(docId) {
  if (!documents.has(docId)) {
    const path = docId.split("/").map(encodeURIComponent).join("/");
    const promise = fetch(`/documents/${path}`).then(async (response) => {
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new Error(errorMessage(body, response.status));
      return body;
    });
    promise.catch(() => documents.delete(docId));
    documents.set(docId, promise);
  }
  return documents.get(docId);
}

async function showCitation(citation) {
  source.hidden = false;
  document.getElementById("source-title").textContent = citation.source;
  document.getElementById("source-range").textContent =
    `[${citation.n}] characters ${citation.start}\u2013${citation.end}`;
  const target = document.getElementById("source-text");
  target.textContent = "Loading\u2026";
  try {
    const doc = await fetchDocument(citation.doc_id);
    const mark = document.createElement("mark");
    mark.id = "highlight";
    // The offsets index the stored text exactly: slice, never search.
    mark.textContent = doc.text.slice(citation.start, citation.end);
    target.textContent = "";
    target.append(doc.text.slice(0, citation.start), mark, doc.text.slice(citation.end));
    mark.scrollIntoView({ block: "center" });
  } catch (error) {
    target.textContent = "Could not load the document: " + error.message;
  }
}

// Parse a text/event-stream body, calling onEvent(name, data) for each event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
    if (done) return;
  }
}

async function ask(question) {
  addItem("user", question);
  const li = addItem("assistant pending", "");
  const text = document.createElement("span");
  text.className = "answer-text streaming";
  li.appendChild(text);
  sendButton.disabled = true;
  let finished = false;
  try {
    const response = await fetch("/chat", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ conversation_id: conversationId, message: question, stream: true }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      showError(li, errorMessage(body, response.status));
      if (response.status === 404 && body && body.detail && body.detail.code === "conversation_not_found") {
        conversationId = null; // it was deleted: the next question starts a new one
      }
      return;
    }
    await readEvents(response, (name, data) => {
      if (name === "start") conversationId = data.conversation_id;
      else if (name === "delta") { text.textContent += data.text; li.scrollIntoView({ block: "end" }); }
      else if (name === "answer") { finished = true; renderAnswer(li, data); li.scrollIntoView({ block: "end" }); }
      else if (name === "error") { finished = true; showError(li, errorMessage(data, data.status)); }
    });
    if (!finished) showError(li, "the answer stream ended early; please ask again.");
  } catch (error) {
    showError(li, "could not reach the service (" + error.message + ").");
  } finally {
    sendButton.disabled = false;
    input.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (!question) return;
  input.value = "";
  ask(question);
});

document.getElementById("new-chat").addEventListener("click", () => {
  conversationId = null;
  messages.textContent = "";
  source.hidden = true;
  input.focus();
});

document.getElementById("close-source").addEventListener("click", () => { source.hidden = true; });
