"""The ingestion side of `make bench` (benchmarks/bench.py): the SciFact subset, (a) this project's Indexer into
Chroma, (b) the plain llama-index pipeline over the same model and splitter, and dense-retrieval quality (nDCG@10)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from index.pipeline import Indexer
from rag.config import Settings
from rag.embedding import SentenceTransformerEmbedder
from rag.factory import open_store
from rag.types import Document

CHUNK_TOKENS, OVERLAP = 200, 32


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_scifact(data: Path, n: int) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, set[str]]]:
    docs = []
    with open(data / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            docs.append(json.loads(line))
            if n and len(docs) >= n:
                break
    qrels: dict[str, set[str]] = {}
    with open(data / "scifact" / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, cid, _ = line.strip().split("\t")
            qrels.setdefault(qid, set()).add(cid)
    queries = [json.loads(line) for line in open(data / "scifact" / "queries.jsonl", encoding="utf-8")]
    queries = [q for q in queries if q["_id"] in qrels]
    return docs, queries, qrels


def as_text(doc: dict[str, str]) -> str:
    return f"{doc['title']}\n\n{doc['text']}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- (a) this project ---------------------------------------------------------------------------------------------
def ingest_ours(raw: list[dict[str, str]], embedder: SentenceTransformerEmbedder, data_dir: Path) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir)
    indexer = Indexer(store=open_store(settings), embedder=embedder, chunk_tokens=CHUNK_TOKENS, chunk_overlap=OVERLAP)
    t0 = time.perf_counter()
    docs = [Document.from_text(doc_id=d["_id"], source=f"scifact/{d['_id']}", text=as_text(d)) for d in raw]
    chunks = indexer.put_many(docs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "docs": len(docs), "chunks": chunks}


# --- (b) plain llama-index ----------------------------------------------------------------------------------------
def ingest_llama(raw: list[dict[str, str]], st_model: Any, data_dir: Path) -> dict[str, Any]:
    import chromadb
    from llama_index.core import Document as LIDocument
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.embedding import load_tokenizer

    class STEmbedding(BaseEmbedding):  # the same local model; what llama-index's HuggingFaceEmbedding does
        def _get_query_embedding(self, query: str) -> list[float]:
            return st_model.encode([query], normalize_embeddings=True)[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_query_embedding(text)

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return st_model.encode(texts, normalize_embeddings=True).tolist()  # type: ignore[no-any-return]

    tok = load_tokenizer()
    splitter = SentenceSplitter(
        chunk_size=CHUNK_TOKENS,
        chunk_overlap=OVERLAP,
        tokenizer=lambda t: tok.encode(t, add_special_tokens=False).ids,
    )
    t0 = time.perf_counter()
    client = chromadb.PersistentClient(path=str(data_dir))
    collection = client.get_or_create_collection("llama", configuration={"hnsw": {"space": "cosine"}})
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    docs = [LIDocument(text=as_text(d), id_=d["_id"]) for d in raw]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=storage, embed_model=STEmbedding(), transformations=[splitter]
    )
    seconds = time.perf_counter() - t0
    chunks = collection.count()
    # Dense retrieval latency of the plain pipeline, for reference.
    retriever = index.as_retriever(similarity_top_k=5)
    lat = []
    for d in raw[:20]:
        t = time.perf_counter()
        retriever.retrieve(d["title"])
        lat.append((time.perf_counter() - t) * 1000)
    return {"seconds": seconds, "docs": len(docs), "chunks": chunks, "retrieve_p50_ms": pct(lat, 50)}


# --- quality ----------------------------------------------------------------------------------------------------
def dense_ndcg10(
    vectors: np.ndarray, chunk_docs: list[str], qvecs: np.ndarray, qids: list[str], qrels: dict[str, set[str]]
) -> float:
    scores = qvecs @ vectors.T
    total = 0.0
    for row, qid in zip(scores, qids, strict=True):
        ranked: list[str] = []
        for i in np.argsort(-row):
            if chunk_docs[i] not in ranked:
                ranked.append(chunk_docs[i])
            if len(ranked) == 10:
                break
        rel = qrels[qid]
        dcg = sum(1 / np.log2(r + 2) for r, d in enumerate(ranked) if d in rel)
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(rel), 10)))
        total += dcg / idcg
    return total / len(qids)
