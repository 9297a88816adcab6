"""FastAPI dependencies shared by the routers: who is calling (tenant), and that tenant's service.

`authenticate` runs for every route (create_app installs it app-wide), so a router added later is protected
without doing anything; `TenantDep`, `ServiceDep` and `ChatDep` hand a route the caller's own tenant (or its
service, or its chat), never another's. Routes declare them as parameter types (`service: ServiceDep`), as the
FastAPI full-stack template does, rather than as `Depends()` defaults.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import EdgeError, forbidden, rate_limited, too_many_failures, unauthorized
from api.schemas import ErrorResponse
from api.tenancy import LOCAL_TENANT, Tenant, TenantRegistry, key_id, retry_after_header
from rag.conversation import ChatService
from rag.service import RAGService

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "Missing or unknown API key (when keys are configured)"},
    403: {
        "model": ErrorResponse,
        "description": "The request names another tenant, uses the metrics key outside /metrics (or a tenant key on "
        "/metrics), or is a browser's write from another origin",
    },
    404: {"model": ErrorResponse, "description": "Unknown document or conversation"},
    413: {"model": ErrorResponse, "description": "Request body over the size limit"},
    422: {"model": ErrorResponse, "description": "Invalid request; the message says what to fix"},
    429: {
        "model": ErrorResponse,
        "description": "Rate limit of this key reached, or too many unknown keys from this address; see Retry-After",
    },
    503: {
        "model": ErrorResponse,
        "description": "Index empty (index_empty), store unavailable (store_unavailable), or, on chat routes, the "
        "conversations database unusable (conversations_unavailable), or, on job routes and uploads that would "
        "become jobs, the jobs database unusable (jobs_unavailable)",
    },
}

# Routes anyone may call, keys or not: liveness, and the chat page (static HTML; its API calls need a key).
PUBLIC_PATHS = frozenset({"/health", "/"})
# The operators' route: its counters name every tenant, so it takes the metrics key (RAG_METRICS_KEY), never a
# tenant's key. Without any key configured (a loopback-only service) it is open, like every route.
METRICS_PATH = "/metrics"

_bearer = HTTPBearer(auto_error=False, description="An API key from RAG_API_KEYS (only when keys are configured).")


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant | None:
    """Resolve the caller's tenant from its bearer key (401 without a valid one), then apply its rate limit."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path in PUBLIC_PATHS:
        return None
    registry: TenantRegistry = request.app.state.registry
    if path == METRICS_PATH:
        _authenticate_operator(request, registry, credentials)
        return None
    if not registry.keyring.enabled:
        request.state.tenant = LOCAL_TENANT
        return registry.get(LOCAL_TENANT)
    presented = _presented_key(request, registry, credentials)
    name = registry.keyring.tenant_of(presented)
    if name is None:
        if registry.keyring.is_metrics_key(presented):
            raise forbidden("the metrics key (RAG_METRICS_KEY) reads /metrics only: use a tenant's key for this route")
        raise _failed(request, registry)
    wanted = request.headers.get("x-tenant")
    if wanted is not None and wanted != name:
        raise forbidden("this key belongs to another tenant than the one named in X-Tenant")
    wait = registry.limiter.acquire(key_id(presented))
    if wait > 0:
        raise rate_limited(retry_after_header(wait))
    request.state.tenant = name
    return registry.get(name)


def _authenticate_operator(
    request: Request, registry: TenantRegistry, credentials: HTTPAuthorizationCredentials | None
) -> None:
    """Let the metrics key through to /metrics; a tenant's key gets 403, an unknown one 401."""
    keyring = registry.keyring
    if not keyring.enabled and not keyring.metrics_enabled:
        return
    presented = _presented_key(request, registry, credentials)
    if keyring.is_metrics_key(presented):
        return
    if keyring.tenant_of(presented) is not None:
        how = (
            "scrape it with the metrics key (RAG_METRICS_KEY)"
            if keyring.metrics_enabled
            else "set RAG_METRICS_KEY on the server and scrape it with that key"
        )
        raise forbidden(f"a tenant's key cannot read /metrics, whose counters name every tenant: {how}")
    raise _failed(request, registry)


def _presented_key(request: Request, registry: TenantRegistry, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The bearer key sent (401 without one); 429 first if this address has sent too many unknown keys."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized("this route needs an API key: send 'Authorization: Bearer <key>'")
    # Checked before the key, so that a locked-out address cannot tell a right guess from a wrong one.
    wait = registry.failures.wait(_address(request))
    if wait > 0:
        raise too_many_failures(retry_after_header(wait))
    return credentials.credentials


def _failed(request: Request, registry: TenantRegistry) -> EdgeError:
    """Count an unknown key against its client address; the 401 to raise."""
    registry.failures.acquire(_address(request))
    return unauthorized("unknown API key: check the key, or ask for one")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def get_tenant(tenant: Annotated[Tenant | None, Depends(authenticate)]) -> Tenant:
    """Return the calling tenant (its service and indexer are bound to its own collection)."""
    assert tenant is not None, "get_tenant used on a public route"
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def get_service(tenant: TenantDep) -> RAGService:
    """Return the calling tenant's service."""
    return tenant.service


def get_chat(tenant: TenantDep) -> ChatService:
    """Return the calling tenant's chat service (its conversations and its collection only)."""
    return tenant.chat


ServiceDep = Annotated[RAGService, Depends(get_service)]
ChatDep = Annotated[ChatService, Depends(get_chat)]
