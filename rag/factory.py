"""Build the expensive objects from Settings: the one place where a setting becomes an object.

Every edge builds through here (the CLI, the app and each of its tenants, `rag eval`, the benchmarks), so a setting
cannot reach one edge and miss another (RAG_PRECISION once reached `rag index` but not `rag serve` or `rag eval`).
The Indexer is built from the same store and embedder by ``index.pipeline.build_indexer`` (rag never imports index).
"""

from __future__ import annotations

import os
from pathlib import Path

from rag.answering.extractive import ExtractiveAnswerer
from rag.answering.generated import GeneratedAnswerer
from rag.answering.judge import SupportJudge
from rag.answering.llm import OpenAIChatLLM
from rag.answering.reader import default_reader
from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.retrieval.hybrid import HybridRetriever
from rag.service import EmbeddingCache, RAGService
from rag.store import ChromaStore


def build_embedder(settings: Settings, *, serving: bool = False) -> SentenceTransformerEmbedder:
    """The embedding model on the settings' device, at the settings' precision (weights load on first use).

    ``serving``: for `rag serve`, whose bulk embedding (uploads, jobs) leaves one core to questions unless
    RAG_BULK_THREADS says otherwise.
    """
    threads = settings.bulk_threads
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) - 1) if serving else 0
    return SentenceTransformerEmbedder(device=settings.device, precision=settings.precision, bulk_threads=threads)


def open_store(settings: Settings, *, tenant: str | None = None) -> ChromaStore:
    """The store of one tenant's collection: on the Chroma server if RAG_CHROMA_URL is set, else embedded."""
    collection = settings.collection_for(tenant)
    if settings.chroma_url:
        return ChromaStore(url=settings.chroma_url, collection=collection, timeout_s=settings.chroma_timeout_s)
    return ChromaStore(path=Path(settings.data_dir) / "chroma", collection=collection)


def build_llm(settings: Settings) -> OpenAIChatLLM | None:
    """The model server the settings describe, or None when none is configured (extractive answers)."""
    if not settings.llm_base_url or not settings.llm_model:
        return None
    return OpenAIChatLLM(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
        max_tokens=settings.llm_max_tokens,
    )


def build_service(
    settings: Settings, *, embedder: SentenceTransformerEmbedder | None = None, tenant: str | None = None
) -> RAGService:
    """The question-answering service over one tenant's collection: store, retriever and answerers.

    Pass ``embedder`` to share one model between several services (the app's tenants, indexing and asking).
    """
    embedder = embedder or build_embedder(settings)
    store = open_store(settings, tenant=tenant)
    retriever = HybridRetriever(
        store=store,
        embedder=embedder,
        cache_path=settings.lexical_cache_path(settings.collection_for(tenant)),
        poll_s=settings.lexical_poll_s,
        wait_s=settings.lexical_wait_s,
    )
    # One sentence cache for the extractive answerer and the support judge: the judge scores the sentences the
    # extractive answer has just embedded.
    sentence_vectors = EmbeddingCache(embedder.embed)
    answerer = ExtractiveAnswerer(
        embed=sentence_vectors,
        min_confidence=settings.min_confidence,
        max_sentences=settings.max_answer_sentences,
        reader=default_reader() if settings.reader else None,
    )
    llm = build_llm(settings)
    generator = (
        GeneratedAnswerer(
            llm=llm, judge=SupportJudge(embed=sentence_vectors), drop_unsupported=settings.llm_drop_unsupported
        )
        if llm is not None
        else None
    )
    return RAGService(
        store=store,
        embedder=embedder,
        retriever=retriever,
        answerer=answerer,
        generator=generator,
        sentence_vectors=sentence_vectors,
        default_top_k=settings.top_k,
    )
