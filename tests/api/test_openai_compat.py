"""The official `openai` client, unchanged, against the real server on a loopback port: plain and streaming."""

from __future__ import annotations

import httpx
import openai
import pytest

from api.routes.openai_compat import split_messages
from rag.embedding import count_tokens
from rag.errors import InvalidMessage, InvalidQuestion
from tests.conftest import SEED_DOC_ID, LiveServer

VRAEM = "Why did the VRAEM faction attack in February?"
KILLINGS = "a delayed response to the killings of Alejandro Borda Casafranca"


@pytest.fixture
def client(seeded_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{seeded_server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def _document_text(server: LiveServer) -> str:
    return str(httpx.get(f"{server.url}/documents/{SEED_DOC_ID}").json()["text"])


def test_openai_models_lists_the_service(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["cited-answers"]


def test_openai_plain_completion_carries_markers_and_citations(
    client: openai.OpenAI, seeded_server: LiveServer
) -> None:
    completion = client.chat.completions.create(model="cited-answers", messages=[{"role": "user", "content": VRAEM}])
    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert message.role == "assistant" and "[1]" in (message.content or "")
    citations = message.model_extra["citations"]  # type: ignore[index]
    assert message.model_extra["no_answer"] is False  # type: ignore[index]
    assert [c["n"] for c in citations] == list(range(1, len(citations) + 1))
    text = _document_text(seeded_server)
    for c in citations:
        assert text[c["start"] : c["end"]] == c["quote"]
    assert any("a desperate reaction to anti-narcotics efforts" in c["quote"] for c in citations)


def test_openai_stream_deltas_join_to_the_answer_and_last_chunk_cites(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="x", messages=[{"role": "user", "content": VRAEM}])
    stream = client.chat.completions.create(model="x", messages=[{"role": "user", "content": VRAEM}], stream=True)
    chunks = list(stream)
    assert len(chunks) > 3
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == plain.choices[0].message.content
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop"
    assert last.delta.model_extra["citations"] == plain.choices[0].message.model_extra["citations"]  # type: ignore[index]


def test_openai_raw_stream_ends_with_done(seeded_server: LiveServer) -> None:
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": VRAEM}]}
    with httpx.stream("POST", f"{seeded_server.url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_openai_message_list_is_the_conversation(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Who is Alipio?"}])
    followup = client.chat.completions.create(
        model="x",
        messages=[
            {"role": "system", "content": "You answer from documents."},
            {"role": "user", "content": "Who is Alipio?"},
            {"role": "assistant", "content": first.choices[0].message.content or ""},
            {"role": "user", "content": [{"type": "text", "text": "what about Gabriel?"}]},
        ],
    )
    quotes = " ".join(c["quote"] for c in followup.choices[0].message.model_extra["citations"])  # type: ignore[index]
    assert "alias \u201cGabriel,\u201d" in quotes and KILLINGS in quotes


def test_openai_off_topic_is_a_plain_refusal(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert completion.choices[0].message.model_extra["no_answer"] is True  # type: ignore[index]
    assert completion.choices[0].message.model_extra["citations"] == []  # type: ignore[index]


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([], "invalid_request"),
        ([{"role": "user", "content": "   "}], "invalid_question"),
        ([{"role": "wizard", "content": VRAEM}], "invalid_request"),
        ([{"role": "tool", "content": VRAEM}], "invalid_request"),
        ([{"role": "user", "content": VRAEM}, {"role": "assistant", "content": "x"}], "invalid_message"),
        ([{"role": "system", "content": "be brief"}], "invalid_message"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "invalid_request"),
    ],
)
def test_openai_bad_messages_return_422_in_the_one_error_model(
    client: openai.OpenAI, seeded_server: LiveServer, messages: list[dict[str, object]], code: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="x", messages=messages)
    assert raised.value.status_code == 422
    for stream in (False, True):
        response = httpx.post(
            f"{seeded_server.url}/v1/chat/completions", json={"messages": messages, "stream": stream}, timeout=60
        )
        assert response.status_code == 422
        assert response.json()["detail"]["code"] == code


def test_split_messages_last_user_message_is_the_question() -> None:
    question, history = split_messages(
        [
            ("system", "be brief"),
            ("user", "Who is Alipio?"),
            ("assistant", "Alejandro Borda Casafranca, alias Alipio [1]"),
            ("user", "when was he killed?"),
        ]
    )
    assert question == "when was he killed?"
    assert [t.question for t in history] == ["Who is Alipio?"]
    assert history[0].quotes == ("Alejandro Borda Casafranca, alias Alipio",)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], InvalidMessage),
        ([("system", "hi")], InvalidMessage),
        ([("user", "Who is Alipio?"), ("assistant", "a man [1]")], InvalidMessage),
        ([("tool", "x"), ("user", "Who is Alipio?")], InvalidMessage),
        ([("user", "   ")], InvalidQuestion),
    ],
)
def test_split_messages_bad_conversation_raises(messages: list[tuple[str, str]], error: type[Exception]) -> None:
    with pytest.raises(error):
        split_messages(messages)


def _word_pieces(*texts: str) -> int:
    return sum(count_tokens(text) for text in texts)


@pytest.mark.parametrize("question", [VRAEM, "What is the capital of France?"])
def test_openai_usage_counts_word_pieces_of_the_messages_and_the_answer(client: openai.OpenAI, question: str) -> None:
    messages = [{"role": "system", "content": "Answer from the documents."}, {"role": "user", "content": question}]
    completion = client.chat.completions.create(model="x", messages=messages)  # type: ignore[arg-type]
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == _word_pieces("Answer from the documents.", question)
    assert usage.completion_tokens == _word_pieces(completion.choices[0].message.content or "") > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_stream_reports_usage_last_only_when_asked(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": VRAEM}]
    plain = client.chat.completions.create(model="x", messages=messages)  # type: ignore[arg-type]
    asked = list(
        client.chat.completions.create(
            model="x",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # OpenAI's shape: after the chunk that finishes the answer, one chunk with no choices and the usage.
    assert asked[-1].choices == [] and asked[-1].usage == plain.usage
    assert asked[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in asked[:-1])
    unasked = list(client.chat.completions.create(model="x", messages=messages, stream=True))  # type: ignore[arg-type]
    assert unasked[-1].choices and all(chunk.usage is None for chunk in unasked)
