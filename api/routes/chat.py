"""Chat routes: conversations kept on the server, answers plain or streamed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import ERRORS, ChatDep
from api.errors import error_body, status_of
from api.schemas import ChatRequest, ChatResponse
from rag.conversation import Conversation
from rag.errors import RAGError
from rag.types import Answer

router = APIRouter(tags=["chat"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        **ERRORS,
        200: {
            "description": "The answer as JSON, or with `stream: true` a `text/event-stream` of `start` "
            "({conversation_id}), `delta` ({text}) events and a final `answer` event (this body); an `error` event "
            "({detail: {code, message}}) if the answer fails mid-stream.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def chat(body: ChatRequest, chat: ChatDep) -> Response:
    """Answer a message in a conversation (a new one without conversation_id); follow-ups use the earlier turns."""
    if not body.stream:
        conversation_id, answer = await run_in_threadpool(
            chat.send, body.message, conversation_id=body.conversation_id, top_k=body.top_k
        )
        payload = ChatResponse(conversation_id=conversation_id, **answer.model_dump())
        return Response(payload.model_dump_json(), media_type="application/json")
    # Validation, retrieval and an unknown conversation fail here, as plain HTTP errors, before the stream starts.
    conversation_id, events = await run_in_threadpool(
        chat.send_stream, body.message, conversation_id=body.conversation_id, top_k=body.top_k
    )
    return StreamingResponse(_sse(conversation_id, events), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/conversations/{conversation_id}", response_model=Conversation, responses=ERRORS)
async def get_conversation(conversation_id: str, chat: ChatDep) -> Conversation:
    """Return a conversation's turns, each with its full answer and citations."""
    return await run_in_threadpool(chat.get, conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=204, responses=ERRORS)
async def delete_conversation(conversation_id: str, chat: ChatDep) -> Response:
    """Delete a conversation and its turns."""
    await run_in_threadpool(chat.delete, conversation_id)
    return Response(status_code=204)


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse(conversation_id: str, events: Iterator[str | Answer]) -> Iterator[str]:
    yield _event("start", {"conversation_id": conversation_id})
    try:
        for event in events:
            if isinstance(event, Answer):
                yield _event("answer", {"conversation_id": conversation_id, **event.model_dump()})
            else:
                yield _event("delta", {"text": event})
    except RAGError as exc:
        body = error_body(exc.code, exc.message)
        yield _event("error", {**body, "status": status_of(exc)})
