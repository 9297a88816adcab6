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

from api.errors import forbidden, rate_limited, unauthorized
from api.schemas import ErrorResponse
from api.tenancy import LOCAL_TENANT, Tenant, TenantRegistry, key_id, retry_after_header
from rag.conversation import ChatService
from rag.service import RAGService

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "Missing or unknown API key (when keys are configured)"},
    403: {"model": ErrorResponse, "description": "The request names another tenant"},
    404: {"model": ErrorResponse, "description": "Unknown document or conversation"},
    413: {"model": ErrorResponse, "description": "Request body over the size limit"},
    422: {"model": ErrorResponse, "description": "Invalid request; the message says what to fix"},
    429: {"model": ErrorResponse, "description": "Rate limit of this key reached; see Retry-After"},
    503: {
        "model": ErrorResponse,
        "description": "Index empty (index_empty), store unavailable (store_unavailable), or, on chat routes, the "
        "conversations database unusable (conversations_unavailable)",
    },
}

# Routes anyone may call, keys or not: liveness, and the chat page (static HTML; its API calls need a key).
PUBLIC_PATHS = frozenset({"/health", "/"})

_bearer = HTTPBearer(auto_error=False, description="An API key from RAG_API_KEYS (only when keys are configured).")


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant | None:
    """Resolve the caller's tenant from its bearer key (401 without a valid one), then apply its rate limit."""
    route = request.scope.get("route")
    if getattr(route, "path", None) in PUBLIC_PATHS:
        return None
    registry: TenantRegistry = request.app.state.registry
    if not registry.keyring.enabled:
        request.state.tenant = LOCAL_TENANT
        return registry.get(LOCAL_TENANT)
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized("this route needs an API key: send 'Authorization: Bearer <key>'")
    name = registry.keyring.tenant_of(credentials.credentials)
    if name is None:
        raise unauthorized("unknown API key: check the key, or ask for one")
    wanted = request.headers.get("x-tenant")
    if wanted is not None and wanted != name:
        raise forbidden("this key belongs to another tenant than the one named in X-Tenant")
    wait = registry.limiter.acquire(key_id(credentials.credentials))
    if wait > 0:
        raise rate_limited(retry_after_header(wait))
    request.state.tenant = name
    return registry.get(name)


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
