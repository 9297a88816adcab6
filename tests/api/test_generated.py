"""Generated answers over HTTP: /ask, /chat (streamed) and /v1/chat/completions (streamed, with the openai client),
with the service pointed at a real llama-cpp-python server, and at nothing at all (the fallback)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from api.app import create_app
from rag.answering.generated import build_messages
from rag.config import Settings
from rag.embedding import count_tokens
from rag.types import Passage
from tests.conftest import SEED_DOC_ID, LiveServer, free_port, make_settings
from tests.llm_servers import ScriptedServer

VRAEM = "Why did the VRAEM faction attack in February?"


@pytest.fixture(scope="module")
def generated_server(seeded_settings: Settings, embedder, llm_server: str) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    settings = make_settings(
        seeded_settings.data_dir,
        top_k=2,
        llm_base_url=llm_server,
        llm_model="smollm2",
        llm_timeout_s=300,
        llm_max_tokens=64,
    )
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        yield server


def _document_text(server: LiveServer) -> str:
    return str(httpx.get(f"{server.url}/documents/{SEED_DOC_ID}").json()["text"])


def _assert_checked(body: dict, text: str) -> None:  # type: ignore[type-arg]
    assert body["mode"] == "generated", body["warnings"]
    numbers = [c["n"] for c in body["citations"]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert list(dict.fromkeys(int(m) for m in re.findall(r"\[(\d+)\]", body["answer"]))) == numbers
    for c in body["citations"]:
        assert text[c["start"] : c["end"]] == c["quote"]
        assert isinstance(c["supported"], bool)
    assert body["sentences"] and all(isinstance(s["supported"], bool) for s in body["sentences"])
    assert 0.0 <= body["supported_share"] <= 1.0


def test_generated_ask_over_http_returns_checked_citations(generated_server: LiveServer) -> None:
    response = httpx.post(f"{generated_server.url}/ask", json={"question": VRAEM}, timeout=600)
    assert response.status_code == 200
    _assert_checked(response.json(), _document_text(generated_server))


def test_generated_chat_streams_judged_sentences(generated_server: LiveServer) -> None:
    with httpx.stream(
        "POST", f"{generated_server.url}/chat", json={"message": VRAEM, "stream": True}, timeout=600
    ) as response:
        assert response.status_code == 200
        response.read()
    events = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "answer" and "delta" in names
    answer = events[-1][1]
    assert "".join(data["text"] for name, data in events if name == "delta") == answer["answer"]
    _assert_checked(answer, _document_text(generated_server))


def test_generated_openai_stream_carries_text_and_verdicts(generated_server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{generated_server.url}/v1", api_key="unused", max_retries=0, timeout=600)
    chunks = list(client.chat.completions.create(model="x", messages=[{"role": "user", "content": VRAEM}], stream=True))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    final = chunks[-1].choices[0]
    assert final.finish_reason == "stop"
    extra = dict(final.delta.model_extra or {})
    _assert_checked({**extra, "answer": text}, _document_text(generated_server))


def test_generated_ask_with_model_down_is_200_extractive_with_warning(seeded_settings: Settings, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        seeded_settings.data_dir, llm_base_url=f"http://127.0.0.1:{free_port()}/v1", llm_model="any"
    )
    with LiveServer(create_app(settings, embedder=embedder)) as server:
        response = httpx.post(f"{server.url}/ask", json={"question": VRAEM}, timeout=120)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
        completion = client.chat.completions.create(model="x", messages=[{"role": "user", "content": VRAEM}])
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "extractive" and body["citations"] and body["warnings"]
    assert body["sentences"] == [] and body["supported_share"] is None
    extra = completion.choices[0].message.model_extra or {}
    assert extra["mode"] == "extractive" and extra["warnings"]
    # The fallback is counted as any extractive answer is: the embedder's word pieces.
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == count_tokens(VRAEM)
    assert completion.usage.completion_tokens == count_tokens(completion.choices[0].message.content or "")


def test_generated_openai_usage_is_the_model_servers(
    generated_server: LiveServer, seeded_server: LiveServer, llm_server: str
) -> None:
    client = openai.OpenAI(base_url=f"{generated_server.url}/v1", api_key="unused", max_retries=0, timeout=600)
    completion = client.chat.completions.create(model="x", messages=[{"role": "user", "content": VRAEM}])
    assert (completion.choices[0].message.model_extra or {})["mode"] == "generated"
    usage = completion.usage
    assert usage is not None
    # The model server counts the prompt it was sent (instructions and both passages), in its own tokens: ask it.
    asked = httpx.post(f"{seeded_server.url}/ask", json={"question": VRAEM, "top_k": 2}, timeout=60).json()
    passages = [Passage.model_validate(p) for p in asked["passages"]]
    direct = openai.OpenAI(base_url=llm_server, api_key="unused", max_retries=0, timeout=600)
    reference = direct.chat.completions.create(
        model="smollm2",
        messages=build_messages(VRAEM, passages),  # type: ignore[arg-type]
        max_tokens=1,
        temperature=0.0,
    )
    assert reference.usage is not None
    assert usage.prompt_tokens == reference.usage.prompt_tokens > count_tokens(VRAEM) + 50
    assert 0 < usage.completion_tokens <= 64
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def _counts(usage: openai.types.CompletionUsage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def test_generated_openai_stream_passes_the_model_servers_usage_on(seeded_settings: Settings, embedder) -> None:  # type: ignore[no-untyped-def]
    reply = "The attacks were a desperate reaction to anti-narcotics efforts in the region [1]."
    reported = {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338}
    with ScriptedServer(reply, usage=reported) as scripted:
        settings = make_settings(seeded_settings.data_dir, llm_base_url=scripted.base_url, llm_model="any")
        with LiveServer(create_app(settings, embedder=embedder)) as server:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
            messages = [{"role": "user", "content": VRAEM}]
            plain = client.chat.completions.create(model="x", messages=messages)  # type: ignore[arg-type]
            chunks = list(
                client.chat.completions.create(
                    model="x",
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
    assert (plain.choices[0].message.model_extra or {})["mode"] == "generated"
    assert plain.usage is not None and _counts(plain.usage) == reported
    assert (chunks[-2].choices[0].delta.model_extra or {})["mode"] == "generated"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert _counts(chunks[-1].usage) == reported
    # The service asked the model server for its counts on the stream, as OpenAI's protocol has it.
    assert [r.get("stream_options") for r in scripted.requests] == [None, {"include_usage": True}]
