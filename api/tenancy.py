"""Tenancy, decided once at the edge: an API key names a tenant, a tenant owns one collection.

Routes receive a `Tenant` (its service and indexer are already bound to its collection) and never see a
collection name; nothing below the API can reach another tenant's collection.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from index.pipeline import Indexer, build_indexer
from rag.config import ApiKey, Settings
from rag.conversation import ChatService, ConversationStore
from rag.embedding import SentenceTransformerEmbedder
from rag.factory import build_service
from rag.service import RAGService
from rag.types import Answer

log = logging.getLogger(__name__)

# The tenant of a service run without keys (loopback only): it uses RAG_COLLECTION itself.
LOCAL_TENANT = "local"


@dataclass
class Tenant:
    """One tenant's view of the service: everything here is bound to its own collection."""

    name: str
    service: RAGService
    indexer: Indexer
    chat: ChatService


class KeyRing:
    """Resolves a presented API key to its tenant (or to the operators' metrics key); keys are kept only as SHA-256
    digests."""

    def __init__(self, keys: list[ApiKey], *, metrics_key: bytes | None = None) -> None:
        self._keys = keys
        self._metrics_key = metrics_key

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @property
    def metrics_enabled(self) -> bool:
        return self._metrics_key is not None

    def is_metrics_key(self, presented: str) -> bool:
        """Whether ``presented`` is the metrics key (compared in constant time)."""
        if self._metrics_key is None:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._metrics_key)

    @property
    def tenants(self) -> list[str]:
        return sorted({k.tenant for k in self._keys})

    def tenant_of(self, presented: str) -> str | None:
        """The tenant of ``presented``, or None; every stored digest is compared, in constant time."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256):
                found = key.tenant
        return found


def key_id(presented: str) -> str:
    """A short label for a key that cannot be turned back into the key (first 12 hex of its SHA-256)."""
    return hashlib.sha256(presented.encode()).hexdigest()[:12]


class RateLimiter:
    """A token bucket per key (an API key's id, or a client address): ``per_minute`` requests at once, refilled
    evenly over a minute (this process)."""

    # Buckets kept at most; past this, the full ones (keys idle for a minute) are forgotten.
    MAX_BUCKETS = 100_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token for ``key``; return 0 if allowed, else the seconds until one is available."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.MAX_BUCKETS:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return self._until_one(tokens)

    def wait(self, key: str) -> float:
        """The seconds until ``key`` has a token (0: it has one now); takes none."""
        if self.per_minute <= 0:
            return 0.0
        with self._lock:
            tokens = self._tokens(key, time.monotonic())
        return 0.0 if tokens >= 1.0 else self._until_one(tokens)

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.per_minute), now))
        return min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)

    def _until_one(self, tokens: float) -> float:
        return (1.0 - tokens) / (self.per_minute / 60.0)

    def _forget_full(self, now: float) -> None:
        self._buckets = {k: v for k, v in self._buckets.items() if self._tokens(k, now) < self.per_minute}


class TenantRegistry:
    """Builds each tenant's service and indexer on first use, sharing one embedding model."""

    def __init__(
        self,
        *,
        settings: Settings,
        embedder: SentenceTransformerEmbedder,
        on_answer: list[Callable[[str, Answer], None]] | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.keyring = KeyRing(settings.keys(), metrics_key=settings.metrics_key_sha256())
        self.limiter = RateLimiter(settings.rate_limit_per_minute if self.keyring.enabled else 0)
        # Unknown keys, counted per client address: guessing keys costs a wait, a colleague's address is unaffected.
        self.failures = RateLimiter(settings.auth_failures_per_minute)
        self._on_answer = on_answer or []
        # One conversation database for all tenants; every row carries its tenant (the tenant's collection name).
        self.conversations = ConversationStore(settings.conversation_path)
        self._tenants: dict[str, Tenant] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Tenant:
        """The tenant called ``name`` (LOCAL_TENANT without keys)."""
        tenant = self._tenants.get(name)
        if tenant is not None:
            return tenant
        with self._lock:
            tenant = self._tenants.get(name)
            if tenant is None:
                tenant = self._build(name)
                self._tenants[name] = tenant
        return tenant

    def opened(self) -> list[Tenant]:
        """The tenants built so far."""
        with self._lock:
            return list(self._tenants.values())

    def _build(self, name: str) -> Tenant:
        collection_tenant = None if name == LOCAL_TENANT and not self.keyring.enabled else name
        service = build_service(self.settings, embedder=self.embedder, tenant=collection_tenant)
        for observer in self._on_answer:
            service.observers.append(_bind(observer, name))
        indexer = build_indexer(self.settings, store=service.store, embedder=self.embedder)
        chat = ChatService(
            service=service, conversations=self.conversations, tenant=self.settings.collection_for(collection_tenant)
        )
        log.info("tenant %s opened (%s)", name, service.store.location)
        return Tenant(name=name, service=service, indexer=indexer, chat=chat)


def _bind(observer: Callable[[str, Answer], None], tenant: str) -> Callable[[Answer], None]:
    def call(answer: Answer) -> None:
        observer(tenant, answer)

    return call


def retry_after_header(seconds: float) -> str:
    """Retry-After wants whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
