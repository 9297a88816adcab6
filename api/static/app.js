// The chat page: streams answers from POST /chat (server-sent events), renders [n] as links to the cited passage,
// and shows the source document (GET /documents/{doc_id}) with the quote highlighted from its offsets. It also
// uploads files (POST /documents, asking for a job: Prefer: respond-async), lists and deletes the tenant's
// documents, and, where the service has keys, asks for one on the first 401 and keeps it for this browser tab.
"use strict";

const messages = document.getElementById("messages");
const form = document.getElementById("ask-form");
const input = document.getElementById("question");
const sendButton = document.getElementById("send");
const source = document.getElementById("source");
const notice = document.getElementById("notice");
const keyDialog = document.getElementById("key-dialog");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const keyMessage = document.getElementById("key-message");
const forgetKeyButton = document.getElementById("forget-key");
const jobList = document.getElementById("jobs");
const docList = document.getElementById("doc-list");
const documents = new Map(); // doc_id -> Promise of the document
let conversationId = null;

// The key lives in sessionStorage: it survives a reload of this tab and is gone when the tab closes.
const KEY_STORAGE = "rag-api-key";
const POLL_MS = 500;
const FINISHED = new Set(["done", "failed", "cancelled"]);
let keyRequest = null; // {promise, resolve, reject} while the key dialog waits for the user

function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

function showKeyState() {
  forgetKeyButton.hidden = !storedKey();
}

// Open the key dialog (once, however many calls are waiting) and resolve with the key the user enters.
function askForKey(message) {
  keyMessage.textContent = message;
  if (!keyRequest) {
    let resolve, reject;
    const promise = new Promise((yes, no) => { resolve = yes; reject = no; });
    keyRequest = { promise, resolve, reject };
    keyInput.value = "";
    if (!keyDialog.open) keyDialog.showModal();
    keyInput.focus();
  }
  return keyRequest.promise;
}

function finishKeyRequest(key) {
  const request = keyRequest;
  keyRequest = null;
  if (keyDialog.open) keyDialog.close();
  if (!request) return;
  if (key) request.resolve(key);
  else request.reject(new Error("no API key given: reload the page or click a button again to enter one"));
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  showKeyState();
  finishKeyRequest(key);
});
document.getElementById("key-cancel").addEventListener("click", () => finishKeyRequest(null));
keyDialog.addEventListener("cancel", (event) => { event.preventDefault(); finishKeyRequest(null); });

// fetch() with the key (Authorization: Bearer, what the service reads): on a 401 the key is dropped, the user is
// asked for one, and the call is sent again with it. Other statuses are the caller's to show.
async function api(path, options = {}) {
  for (;;) {
    const key = storedKey();
    const headers = new Headers(options.headers || {});
    if (key) headers.set("authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    const body = await response.json().catch(() => null);
    const current = storedKey();
    if (current && current !== key) continue; // a new key was entered while this call was out
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    const reason = (body && body.detail && body.detail.message) || "this service needs an API key";
    await askForKey(
      key
        ? `The key was refused (HTTP 401): ${reason}.`
        : `This service needs an API key (HTTP 401): ${reason}.`,
    );
  }
}

function docPath(docId) {
  return docId.split("/").map(encodeURIComponent).join("/");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = false;
}

notice.addEventListener("click", () => { notice.hidden = true; });

function addItem(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  if (text) li.textContent = text;
  messages.appendChild(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

// The server's message (the one error model: {"detail": {"code", "message"}}), said plainly for 403 and 429.
function errorMessage(body, status, retryAfter) {
  const detail = body && body.detail;
  let text = detail && detail.message ? `${detail.message} (${detail.code || status})` : `The request failed with HTTP ${status}.`;
  if (status === 403) text = `Refused (HTTP 403): ${text}`;
  if (status === 429) {
    const wait = retryAfter ? `try again in ${retryAfter} s (Retry-After)` : "try again shortly";
    text = `Too many requests (HTTP 429): ${text}; ${wait}.`;
  }
  return text;
}

async function responseError(response) {
  const body = await response.json().catch(() => null);
  return errorMessage(body, response.status, response.headers.get("retry-after"));
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
      link.title = `${citation.source} (${where(citation)})`;
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
    note.className = "refusal";
    const title = document.createElement("strong");
    title.textContent = "No answer found in the documents.";
    note.append(title, " They do not say this, or not clearly enough. Try rephrasing, or ask about something they cover.");
    li.appendChild(note);
  }
  if (typeof answer.confidence === "number") {
    const confidence = document.createElement("div");
    confidence.className = "confidence";
    confidence.textContent = `Confidence: ${Math.round(answer.confidence * 100)}%`;
    confidence.title = "The estimated probability that this answer is right";
    li.appendChild(confidence);
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
      link.textContent = hasPage(c) ? `${c.source}, page ${c.page}` : c.source;
      link.addEventListener("click", (event) => { event.preventDefault(); showCitation(c); });
      item.append(link, ` \u201c${c.quote}\u201d`);
      list.appendChild(item);
    }
    li.appendChild(list);
  }
}

// A citation into a PDF names its page (1-based); other types carry page: null (or no field on older servers).
function hasPage(citation) {
  return citation.page !== null && citation.page !== undefined;
}

function where(citation) {
  const range = `characters ${citation.start}\u2013${citation.end}`;
  return hasPage(citation) ? `page ${citation.page}, ${range}` : range;
}

function fetchDocument(docId) {
  if (!documents.has(docId)) {
    const promise = api(`/documents/${docPath(docId)}`).then(async (response) => {
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new Error(errorMessage(body, response.status, response.headers.get("retry-after")));
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
  document.getElementById("source-range").textContent = `[${citation.n}] ${where(citation)}`;
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
    const response = await api("/chat", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ conversation_id: conversationId, message: question, stream: true }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      showError(li, errorMessage(body, response.status, response.headers.get("retry-after")));
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
    // fetch() fails with a TypeError when the service cannot be reached; other errors say what happened.
    showError(li, error instanceof TypeError ? `could not reach the service (${error.message}).` : error.message);
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

// Uploads: each file is a job with its own progress bar. The service may answer at once (201/200: stored) or take
// the file as a job (202 with status_url), which is polled until it is done, failed or cancelled.
function addJob(name) {
  const li = document.createElement("li");
  li.className = "job";
  const title = document.createElement("span");
  title.className = "job-name";
  title.textContent = name;
  const bar = document.createElement("progress");
  bar.setAttribute("aria-label", `Progress of ${name}`);
  const state = document.createElement("span");
  state.className = "job-status";
  li.append(title, bar, state);
  jobList.prepend(li);
  const job = { li, bar, state };
  setJob(job, "waiting", null, "waiting\u2026");
  return job;
}

function setJob(job, status, progress, text) {
  job.li.dataset.status = status;
  job.li.className = `job ${status}`;
  if (progress && progress.total > 0) {
    job.bar.max = progress.total;
    job.bar.value = Math.min(progress.done, progress.total);
  } else if (status === "done") {
    job.bar.max = 1;
    job.bar.value = 1;
  } else if (!FINISHED.has(status)) {
    job.bar.removeAttribute("value"); // indeterminate: working, amount unknown
  }
  let counted = "";
  if (progress && progress.total > 0) counted = ` ${progress.done}/${progress.total} ${progress.unit || ""}`.trimEnd();
  job.state.textContent = text || `${status}${counted}`;
}

function jobError(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.message ? `${error.message}${error.code ? ` (${error.code})` : ""}` : JSON.stringify(error);
}

async function upload(file, job) {
  setJob(job, "uploading", null, "uploading\u2026");
  const body = new FormData();
  body.append("file", file, file.name);
  try {
    const response = await api("/documents", { method: "POST", headers: { prefer: "respond-async" }, body });
    if (response.status === 202) {
      await followJob(job, await response.json());
    } else if (response.ok) {
      const stored = await response.json();
      setJob(job, "done", null, `done: ${stored.status}, ${stored.chunks} chunks`);
      documents.delete(stored.doc_id); // a replaced document's text may have changed
    } else {
      setJob(job, "failed", null, await responseError(response));
    }
  } catch (error) {
    setJob(job, "failed", null, error instanceof TypeError ? `could not reach the service (${error.message})` : error.message);
  }
  refreshDocuments();
}

async function followJob(job, accepted) {
  const url = accepted.status_url || `/jobs/${encodeURIComponent(accepted.job_id)}`;
  setJob(job, accepted.status || "queued", accepted.progress);
  for (;;) {
    await sleep(POLL_MS);
    const response = await api(url);
    if (response.status === 429) {
      // Polling must not give up on a job that is still running: wait as told, then ask again.
      const after = Number(response.headers.get("retry-after")) || 1;
      job.state.textContent = await responseError(response);
      await sleep(after * 1000);
      continue;
    }
    if (!response.ok) {
      setJob(job, "failed", null, await responseError(response));
      return;
    }
    const state = await response.json();
    const error = state.status === "failed" ? jobError(state.error) : "";
    setJob(job, state.status, state.progress, error ? `failed: ${error}` : "");
    if (FINISHED.has(state.status)) {
      if (state.status === "done") documents.clear(); // a replaced document's text may have changed
      return;
    }
  }
}

// A few uploads at a time: fifty dropped files wait their turn in the page instead of all holding the server's
// worker threads at once (each already has its job row).
const MAX_UPLOADS = 3;
const waiting = [];
let uploading = 0;

function uploadFiles(files) {
  for (const file of files) waiting.push({ file, job: addJob(file.name) });
  startUploads();
}

function startUploads() {
  while (uploading < MAX_UPLOADS && waiting.length) {
    const { file, job } = waiting.shift();
    uploading += 1;
    upload(file, job).finally(() => { uploading -= 1; startUploads(); });
  }
}

const fileInput = document.getElementById("file-input");
fileInput.addEventListener("change", () => {
  uploadFiles([...fileInput.files]);
  fileInput.value = ""; // the same file chosen again is a new upload
});

const dropzone = document.getElementById("dropzone");
dropzone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
});
// Files dropped anywhere on the page are uploaded (a browser would otherwise open them in place of the page).
document.addEventListener("dragover", (event) => {
  if (!event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
  event.preventDefault();
  dropzone.classList.add("over");
});
document.addEventListener("dragleave", (event) => {
  if (event.relatedTarget === null) dropzone.classList.remove("over");
});
document.addEventListener("drop", (event) => {
  dropzone.classList.remove("over");
  if (!event.dataTransfer || !event.dataTransfer.files.length) return;
  event.preventDefault();
  uploadFiles([...event.dataTransfer.files]);
});

// The tenant's documents, each with a delete button that asks for a second click ("Delete?") before deleting.
let listing = 0; // the latest refresh wins when several overlap

async function refreshDocuments() {
  const mine = ++listing;
  try {
    const response = await api("/documents");
    if (!response.ok) {
      showNotice(`Could not list the documents: ${await responseError(response)}`);
      return;
    }
    const body = await response.json();
    if (mine === listing) renderDocuments(body.documents);
  } catch (error) {
    showNotice(`Could not list the documents: ${error.message}`);
  }
}

function renderDocuments(list) {
  docList.textContent = "";
  document.getElementById("doc-empty").hidden = list.length > 0;
  for (const doc of [...list].sort((a, b) => a.source.localeCompare(b.source))) {
    const li = document.createElement("li");
    li.dataset.docId = doc.doc_id;
    const name = document.createElement("span");
    name.className = "doc-source";
    name.textContent = doc.title || doc.source;
    name.title = doc.doc_id;
    const chunks = document.createElement("span");
    chunks.className = "muted";
    chunks.textContent = `${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"}`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "delete";
    button.textContent = "Delete";
    button.setAttribute("aria-label", `Delete ${doc.source}`);
    button.addEventListener("click", () => confirmDelete(doc, li, button));
    li.append(name, chunks, button);
    docList.appendChild(li);
  }
}

function confirmDelete(doc, li, button) {
  if (!button.classList.contains("confirm")) {
    button.classList.add("confirm");
    button.textContent = "Delete?";
    button.setAttribute("aria-label", `Click again to delete ${doc.source} and its chunks`);
    button.timer = setTimeout(() => {
      button.classList.remove("confirm");
      button.textContent = "Delete";
      button.setAttribute("aria-label", `Delete ${doc.source}`);
    }, 5000);
    return;
  }
  clearTimeout(button.timer);
  deleteDocument(doc, li, button);
}

async function deleteDocument(doc, li, button) {
  button.disabled = true;
  button.textContent = "Deleting\u2026";
  try {
    const response = await api(`/documents/${docPath(doc.doc_id)}`, { method: "DELETE" });
    if (!response.ok && response.status !== 404) {
      showNotice(`Could not delete ${doc.source}: ${await responseError(response)}`);
      button.disabled = false;
      button.classList.remove("confirm");
      button.textContent = "Delete";
      return;
    }
    li.remove(); // deleted now, or by someone else before (404)
    documents.delete(doc.doc_id);
  } catch (error) {
    showNotice(`Could not delete ${doc.source}: ${error.message}`);
    button.disabled = false;
  }
  refreshDocuments();
}

forgetKeyButton.addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  conversationId = null; // another key may be another tenant, whose conversations these are not
  showKeyState();
  documents.clear();
  docList.textContent = "";
  refreshDocuments(); // with keys configured, this asks for one again
});

showKeyState();
refreshDocuments();
