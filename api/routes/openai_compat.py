"""OpenAI-compatible chat completions: point any OpenAI client (base_url=<service>/v1) at the service.

Stateless: the message list is the conversation. The answer text carries the [n] markers; the citations travel
machine-readably beside it: on ``choices[0].message.citations`` (plain) and on the final chunk's
``choices[0].delta.citations`` (stream), with ``no_answer``, ``mode``, ``warnings``, ``sentences`` (the support
verdicts of a generated answer) and ``supported_share`` next to them. Errors keep the service's one error
body ({"detail": {"code", "message"}}); OpenAI clients raise their usual status-based exceptions on it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Literal, get_args

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import ERRORS, ServiceDep
from api.disconnects import Gone, check, final_answer, while_connected
from api.errors import error_body
from api.routes.chat import SSE_HEADERS
from api.schemas import RequestBody
from rag.answering.generated import estimate_usage
from rag.config import MAX_TOP_K
from rag.errors import InvalidMessage, RAGError
from rag.retrieval.followup import PriorTurn, history_from_exchanges
from rag.service import validate_question
from rag.types import Answer, Citation, SentenceVerdict, TokenUsage

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

MODEL_ID = "cited-answers"

Role = Literal["system", "developer", "user", "assistant"]
ROLES: tuple[str, ...] = get_args(Role)
_MARKER = re.compile(r"\s*\[\d+\]")


class ContentPart(BaseModel):
    type: Literal["text"] = Field(description="Only text parts are understood.")
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation, as in OpenAI's protocol."""

    role: Role
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """Return the message's text, its parts joined."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = Field(
        False, description="Send a last chunk with empty choices and the answer's usage, before data: [DONE]."
    )


class ChatCompletionRequest(RequestBody):
    """OpenAI's chat-completions request; sampling parameters (temperature, max_tokens...) are accepted and ignored."""

    model: str = Field(MODEL_ID, description=f"Any name; the service answers as {MODEL_ID!r}.")
    messages: list[ChatMessage] = Field(min_length=1, description="The whole conversation; the last one is the user's.")
    stream: bool = Field(False, description="Stream server-sent events of chat.completion.chunk, then data: [DONE].")
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="Passages to retrieve (an extension).")
    stream_options: StreamOptions | None = Field(None, description="With stream=true: include_usage, as OpenAI's.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="The answer text with its [n] markers.")
    citations: list[Citation] = Field(description="What each marker [n] cites (doc_id, source, quote, offsets).")
    no_answer: bool = Field(description="True when the documents do not answer the question.")
    mode: str = Field("extractive", description="'generated' (a language model wrote it) or 'extractive'.")
    warnings: list[str] = Field(default_factory=list, description="E.g. a fallback from the language model.")
    sentences: list[SentenceVerdict] = Field(
        default_factory=list, description="Generated answers: each sentence's support verdict."
    )
    supported_share: float | None = Field(None, description="Generated answers: share of supported sentences.")


class CompletionChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletionResponse(BaseModel):
    """OpenAI's chat.completion object, with citations on the message."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: TokenUsage = Field(
        description="Generated answers: the model server's counts, passed through. Extractive answers (and generated "
        "ones the server gave no counts for): the embedder's word pieces, of the messages' text (prompt) and of the "
        "answer text (completion)."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models", response_model=ModelListResponse)
async def list_models() -> ModelListResponse:
    """List the one model the service answers as."""
    return ModelListResponse(data=[ModelCard(id=MODEL_ID, created=0, owned_by="cited-answers")])


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**ERRORS, 200: {"description": "chat.completion, or with stream=true SSE chunks and data: [DONE]"}},
)
async def chat_completions(
    body: ChatCompletionRequest, service: ServiceDep, request: Request
) -> ChatCompletionResponse | StreamingResponse:
    """Answer the last user message with cited sentences, using the earlier messages as context."""
    question, history = split_messages([(m.role, m.text()) for m in body.messages])
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = body.model or MODEL_ID
    prompt = [m.text() for m in body.messages]
    if not body.stream:

        def work(gone: Gone) -> Answer:
            check(gone)
            events = service.ask_stream(question, top_k=body.top_k, context=history, checkpoint=lambda: check(gone))
            return final_answer(events, gone)

        answer = await while_connected(request, work)
        return ChatCompletionResponse(
            id=completion_id,
            created=created,
            model=model,
            choices=[CompletionChoice(message=_message(answer))],
            usage=await run_in_threadpool(usage_of, answer, prompt),
        )
    events = await run_in_threadpool(service.ask_stream, question, top_k=body.top_k, context=history)
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    chunks = _chunks(
        events,
        completion_id=completion_id,
        created=created,
        model=model,
        usage_prompt=prompt if include_usage else None,
    )
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)


def usage_of(answer: Answer, prompt: Sequence[str]) -> TokenUsage:
    """The answer's token usage: the model server's for a generated answer that has it, else counted in the
    embedder's word pieces (the messages' texts as the prompt, the answer text as the completion)."""
    if answer.mode == "generated" and answer.usage is not None:
        return answer.usage
    return estimate_usage(prompt, answer.answer)


def split_messages(messages: Sequence[tuple[str, str]]) -> tuple[str, list[PriorTurn]]:
    """Split a stateless chat ((role, content) pairs) into the question and the earlier turns as context.

    The last message must come from the user: it is the question. Earlier user messages are the earlier
    questions, each followed by the assistant's reply (its text, markers removed, stands in for the quotes it cited).
    System and developer messages carry no evidence and are ignored.
    """
    turns = [(role, content) for role, content in messages if role not in ("system", "developer")]
    for role, _ in turns:
        if role not in ROLES:
            raise InvalidMessage(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not turns or turns[-1][0] != "user":
        raise InvalidMessage("the last message must come from the user (role 'user'): it is the question answered")
    question = validate_question(turns[-1][1])
    exchanges: list[tuple[str, list[str]]] = []
    for role, content in turns[:-1]:
        if role == "user" and content.strip():
            exchanges.append((content.strip(), []))
        elif role == "assistant" and exchanges and content.strip():
            exchanges[-1][1].append(_MARKER.sub("", content).strip())
    return question, history_from_exchanges(exchanges)


def _message(answer: Answer) -> AssistantMessage:
    """The answer text with what travels beside it: citations and, for generated answers, their checks."""
    return AssistantMessage(
        content=answer.answer,
        citations=answer.citations,
        no_answer=answer.no_answer,
        mode=answer.mode,
        warnings=answer.warnings,
        sentences=answer.sentences,
        supported_share=answer.supported_share,
    )


def _chunks(
    events: Iterator[str | Answer],
    *,
    completion_id: str,
    created: int,
    model: str,
    usage_prompt: Sequence[str] | None = None,
) -> Iterator[str]:
    """The stream's chunks; with ``usage_prompt`` (the client asked for usage), a last one with no choices and
    the usage, as OpenAI sends it."""

    def chunk(delta: dict[str, object], finish_reason: str | None = None) -> str:
        return envelope([{"index": 0, "delta": delta, "finish_reason": finish_reason}])

    def envelope(choices: list[dict[str, object]], **extra: object) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for event in events:
            if isinstance(event, Answer):
                extra = _message(event).model_dump(exclude={"role", "content"})
                yield chunk(extra, finish_reason="stop")
                if usage_prompt is not None:
                    yield envelope([], usage=usage_of(event, usage_prompt).model_dump())
            else:
                yield chunk({"content": event})
    except RAGError as exc:
        yield f"data: {json.dumps({'error': error_body(exc.code, exc.message)['detail']})}\n\n"
    yield "data: [DONE]\n\n"
