"""Evaluation route: score the served index against a small inline reference set."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import ERRORS, ServiceDep
from api.disconnects import Gone, check, while_connected
from api.schemas import RequestBody
from rag.config import MAX_EVAL_ITEMS, MAX_TOP_K
from rag.evaluation.references import InvalidReferences, ReferenceItem
from rag.service import RAGService
from rag.types import Answer

router = APIRouter(tags=["evaluation"])


class EvalItem(BaseModel):
    """One reference question (the JSON Lines format of `rag eval`)."""

    id: str = Field(min_length=1, description="Your id for the question.")
    question: str = Field(min_length=1, description="The question to ask.")
    answers: list[str] = Field(default_factory=list, description="Reference answer strings.")
    gold_doc_ids: list[str] = Field(default_factory=list, description="Documents that hold the answer.")
    gold_quotes: list[str] = Field(default_factory=list, description="Exact evidence passages.")
    unanswerable: bool = Field(False, description="True when the index should not answer it (a refusal is right).")


class EvalRequest(RequestBody):
    """A small inline reference set; larger sets belong to `rag eval`."""

    items: list[EvalItem] = Field(min_length=1, description=f"1 to {MAX_EVAL_ITEMS} reference questions.")
    top_k: int | None = Field(
        None, ge=1, le=MAX_TOP_K, description="Passages per answer; the server default if omitted."
    )


class EvalResponse(BaseModel):
    """Aggregates over the set and every question's result (as in `rag eval`'s eval.json)."""

    aggregates: dict[str, Any] = Field(description="Mean of each metric, refusal precision/recall, latency p50/p95.")
    results: list[dict[str, Any]] = Field(description="Per question: answer, citations, ranking, metrics, latency.")


@router.post("/eval", response_model=EvalResponse, responses=ERRORS)
async def evaluate_inline(body: EvalRequest, service: ServiceDep, request: Request) -> EvalResponse:
    """Ask each reference question of the served index and score the answers, citations and refusals."""
    if len(body.items) > MAX_EVAL_ITEMS:
        raise InvalidReferences(
            f"items has {len(body.items)} questions: POST /eval takes at most {MAX_EVAL_ITEMS}; "
            "split the set, or run `rag eval FILE` for larger sets"
        )
    ids = [item.id for item in body.items]
    if len(set(ids)) != len(ids):
        raise InvalidReferences("items: every id must be unique")
    return await while_connected(request, lambda gone: _run(service, body, gone))


def _run(service: RAGService, body: EvalRequest, gone: Gone) -> EvalResponse:
    from dataclasses import asdict

    from rag.evaluation.metrics import evaluate, service_callables

    items = [ReferenceItem(**item.model_dump()) for item in body.items]
    ask, rank = service_callables(service, top_k=body.top_k)

    def ask_while_connected(question: str) -> Answer:  # up to 50 questions: stop between them once nobody waits
        check(gone)
        return ask(question)

    def rank_while_connected(question: str) -> list[str]:
        check(gone)
        return rank(question)

    run = evaluate(items, ask=ask_while_connected, rank=rank_while_connected)
    return EvalResponse(aggregates=run.aggregates, results=[asdict(r) for r in run.results])
