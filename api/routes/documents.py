"""Document routes: list and read indexed documents."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from api.deps import ERRORS, get_service
from api.schemas import DocumentDetail, DocumentList, DocumentSummary
from rag.service import RAGService

router = APIRouter(tags=["documents"])


@router.get("/documents", response_model=DocumentList)
async def list_documents(service: RAGService = Depends(get_service)) -> DocumentList:
    """List the indexed documents (id, source, chunk count, content hash)."""
    infos = await run_in_threadpool(service.list_documents)
    return DocumentList(
        documents=[
            DocumentSummary(
                doc_id=i.doc_id, source=i.source, chunks=i.chunks, content_hash=i.content_hash, title=i.title
            )
            for i in infos
        ]
    )


@router.get("/documents/{doc_id:path}", response_model=DocumentDetail, responses=ERRORS)
async def get_document(doc_id: str, service: RAGService = Depends(get_service)) -> DocumentDetail:
    """Return one document with its full normalised text, so citation offsets can be highlighted."""
    info = await run_in_threadpool(service.get_document, doc_id)
    return DocumentDetail(
        doc_id=info.doc_id,
        source=info.source,
        chunks=info.chunks,
        content_hash=info.content_hash,
        title=info.title,
        text=info.text or "",
    )
