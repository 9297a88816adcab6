"""Prometheus metrics of one app (its own registry, so several apps in one process never mix their counts)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rag.errors import RAGError
from rag.types import Answer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Metrics:
    """Request, ingestion and answer-quality counters."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests_total",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "HTTP request latency by route template and method",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.documents = Counter(
            "rag_documents_ingested_total",
            "Documents written through the API by result",
            ["tenant", "result"],
            registry=self.registry,
        )
        self.chunks = Counter(
            "rag_chunks_ingested_total",
            "Chunks embedded and stored through the API",
            ["tenant"],
            registry=self.registry,
        )
        self.answers = Counter("rag_answers_total", "Answers produced", ["tenant"], registry=self.registry)
        self.no_answers = Counter(
            "rag_no_answers_total",
            "Answers that were refusals (no_answer); divide by rag_answers_total for the rate",
            ["tenant"],
            registry=self.registry,
        )
        self.citations = Histogram(
            "rag_answer_citations",
            "Citations per answer",
            ["tenant"],
            buckets=(0, 1, 2, 3, 4, 5, 8),
            registry=self.registry,
        )
        self.jobs = Gauge(
            "rag_jobs",
            "Ingestion jobs by status (queued, running), read from the jobs database at each scrape",
            ["status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "rag_job_duration_seconds",
            "Seconds from a job's start to its end, by how it ended (done, failed, cancelled)",
            ["status"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.job_chunks_total = Counter(
            "rag_job_chunks_embedded_total",
            "Chunks embedded by ingestion jobs (this process)",
            ["tenant"],
            registry=self.registry,
        )
        # Set by the app once its job store is open: job counts per status, over every replica sharing it.
        self.job_counts: Callable[[], dict[str, int]] | None = None

    def observe_request(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_answer(self, tenant: str, answer: Answer) -> None:
        self.answers.labels(tenant).inc()
        if answer.no_answer:
            self.no_answers.labels(tenant).inc()
        self.citations.labels(tenant).observe(len(answer.citations))

    def observe_ingest(self, tenant: str, result: str, chunks: int = 0) -> None:
        self.documents.labels(tenant, result).inc()
        if chunks and result in {"added", "updated"}:
            self.chunks.labels(tenant).inc(chunks)

    def job_chunks(self, tenant: str, chunks: int) -> None:
        self.job_chunks_total.labels(tenant).inc(chunks)

    def job_finished(self, tenant: str, status: str, seconds: float) -> None:
        self.job_duration.labels(status).observe(seconds)

    def render(self) -> bytes:
        if self.job_counts is not None:
            try:
                counts = self.job_counts()
            except RAGError:  # the jobs database cannot be read (logged there): the gauges keep their last value
                counts = None
            for status in ("queued", "running"):
                if counts is not None:
                    self.jobs.labels(status).set(counts.get(status, 0))
        return generate_latest(self.registry)
