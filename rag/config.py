"""One Settings object for the whole service, read from RAG_* environment variables."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("data")
DEFAULT_COLLECTION = "default"
DEFAULT_TOP_K = 5
MAX_TOP_K = 50
MAX_QUESTION_CHARS = 2000
# POST /eval runs inline, inside one request: a small set only (rag eval takes any size).
MAX_EVAL_ITEMS = 50
# Word pieces per chunk, counted with the embedder's own tokenizer. MiniLM truncates at 256 pieces including
# [CLS] and [SEP]; the splitter's count of a joined chunk can differ by a few pieces from the sum of its parts,
# so we leave a margin and a test asserts that no chunk exceeds the model's limit.
DEFAULT_CHUNK_TOKENS = 200
DEFAULT_CHUNK_OVERLAP = 32
DEFAULT_MAX_ANSWER_SENTENCES = 3
# A generated answer that takes longer than this falls back to the extractive one.
DEFAULT_LLM_TIMEOUT_S = 30.0
DEFAULT_LLM_MAX_TOKENS = 256
# A call to the Chroma server that gets no answer for this long fails with 503 store_unavailable: a hung server
# (stopped, swapping, a dead network path) must not hold a request, or a worker thread, for good.
DEFAULT_CHROMA_TIMEOUT_S = 5.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Request bodies (JSON or an uploaded file) above this many bytes get 413; 10 MiB holds a long PDF.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# A document whose text (normalised) is longer gets 413, and HTML and PDF are read no further: about 1,200 pages,
# some 2 to 4 minutes of embedding on 2 CPU cores (seconds on a GPU). Bodies over RAG_SYNC_UPLOAD_BYTES are jobs, so
# such a document does not hold a request; a small file that expands (a PDF) can still, within this cap.
DEFAULT_MAX_DOCUMENT_CHARS = 4_000_000
# A document that splits into more chunks gets 413 before any is embedded. At the default chunk size the character
# cap binds first (4 million characters make about 5,200 chunks); a small RAG_CHUNK_TOKENS makes many more.
DEFAULT_MAX_CHUNKS_PER_DOCUMENT = 6_000
# Requests per minute per API key (a token bucket: this many at once, refilled evenly over the minute); 0 = off.
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
# Unknown API keys per minute from one client address (a token bucket) before every key from it gets 429; 0 = off.
DEFAULT_AUTH_FAILURES_PER_MINUTE = 10
# POST /documents bodies above this many bytes are answered 202 and indexed by a job (see index/jobs.py).
DEFAULT_SYNC_UPLOAD_BYTES = 256 * 1024
# Threads running ingestion jobs in one process (a tenant's jobs still run one at a time).
DEFAULT_JOB_WORKERS = 2
MIN_KEY_CHARS = 16
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class ApiKey:
    """One configured key: only its SHA-256 is kept, next to the tenant it belongs to."""

    tenant: str
    sha256: bytes


def parse_api_keys(spec: str) -> list[ApiKey]:
    """Parse ``tenant:key,tenant2:key2`` (or ``@/path/file`` with one ``tenant:key`` per line) into hashed keys."""
    spec = spec.strip()
    if spec.startswith("@"):
        try:
            spec = Path(spec[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"RAG_API_KEYS names a file that cannot be read: {exc}") from exc
    keys: list[ApiKey] = []
    for n, item in enumerate(re.split(r"[,\n]", spec), start=1):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        tenant, sep, key = item.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not key:
            raise ValueError(f"RAG_API_KEYS entry {n} is not 'tenant:key'")
        if not TENANT_PATTERN.match(tenant):
            raise ValueError(f"RAG_API_KEYS entry {n}: tenant must be 1-32 letters, digits, '-' or '_'")
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"RAG_API_KEYS entry {n}: a key must be at least {MIN_KEY_CHARS} characters")
        keys.append(ApiKey(tenant=tenant, sha256=hashlib.sha256(key.encode()).digest()))
    if len({k.sha256 for k in keys}) != len(keys):
        raise ValueError("RAG_API_KEYS lists the same key twice")
    return keys


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in one spelling (lower case, no default port), or None if ``value`` is no web origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[scheme]) else f":{port}")


def parse_origins(spec: str) -> list[str]:
    """Parse ``https://a.example,http://b.example:8080`` into normalised origins (ValueError naming a bad one)."""
    origins = []
    for item in spec.split(","):
        if not item.strip():
            continue
        origin = normalize_origin(item)
        if origin is None:
            raise ValueError(
                f"RAG_ALLOWED_ORIGINS: {item.strip()!r} is not an origin; write scheme://host[:port], such as "
                "https://tools.example or http://127.0.0.1:3000 (no path, no wildcard)"
            )
        origins.append(origin)
    return origins


class Settings(BaseSettings):
    """Every knob of the service; each one is an environment variable with the RAG_ prefix."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the embedded Chroma store and SQLite files live.")
    collection: str = Field(DEFAULT_COLLECTION, description="Name of the (single-tenant) collection.")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="Passages retrieved per question.")
    chunk_tokens: int = Field(DEFAULT_CHUNK_TOKENS, ge=32, le=250)
    chunk_overlap: int = Field(DEFAULT_CHUNK_OVERLAP, ge=0, le=128)
    min_confidence: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Refuse (no_answer) when the answer's confidence is below this; default: the operating point "
        "fitted with the answerer's model (README, 'Answering').",
    )
    bulk_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="CPU threads for bulk embedding (uploads, jobs, rag index); default: every core for rag index, "
        "one fewer than the cores for rag serve, so questions keep a core while a job embeds.",
    )
    reader: bool = Field(
        False,
        description="Read the three best candidate sentences against the question with the fine-tuned MiniLM reader "
        "(rag/answering/reader.py) before answering: on SQuAD's validation articles +1.9 points of sentence choice, "
        "at a cost of tens of milliseconds per question (README, 'Answering').",
    )
    conversation_db: Path | None = Field(
        None,
        description="The SQLite file that holds chat conversations; default <data_dir>/conversations.sqlite3.",
    )
    jobs_db: Path | None = Field(
        None,
        description="The SQLite file that holds ingestion jobs and their uploads; default <data_dir>/jobs.sqlite3.",
    )
    lexical_cache: bool = Field(
        True,
        description="Keep the BM25 index in <data_dir>/lexical/ between starts (validated against the store's change "
        "log at start); false: rebuild it from the collection at every start.",
    )
    lexical_poll_s: float = Field(
        1.0,
        gt=0,
        le=300,
        description="rag serve reads the store's change log this often, so a write of another replica reaches its "
        "BM25 index within about this long even when no question arrives.",
    )
    lexical_wait_s: float = Field(
        0.2,
        ge=0,
        le=10,
        description="A question that finds the store changed waits at most this long for the BM25 index to catch up, "
        "then answers from the last consistent one.",
    )
    sync_upload_bytes: int = Field(
        DEFAULT_SYNC_UPLOAD_BYTES,
        ge=0,
        description="POST /documents bodies over this many bytes become jobs (202 Accepted); smaller ones are indexed "
        "before the response unless the request says 'Prefer: respond-async'.",
    )
    job_workers: int = Field(
        DEFAULT_JOB_WORKERS, ge=1, le=16, description="Ingestion jobs run at once in one process (one per tenant)."
    )
    max_answer_sentences: int = Field(
        DEFAULT_MAX_ANSWER_SENTENCES, ge=1, le=3, description="At most this many sentences in an extractive answer."
    )
    llm_base_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1); unset: extractive answers.",
    )
    llm_model: str | None = Field(None, description="Model name sent to the server; required with RAG_LLM_BASE_URL.")
    llm_api_key: str = Field("not-needed", description="API key sent to the server (local servers ignore it).")
    llm_timeout_s: float = Field(
        DEFAULT_LLM_TIMEOUT_S, gt=0, le=600, description="Seconds before a generated answer falls back to extractive."
    )
    llm_max_tokens: int = Field(DEFAULT_LLM_MAX_TOKENS, ge=16, le=4096, description="Longest generated answer.")
    llm_drop_unsupported: bool = Field(
        False, description="Drop generated sentences the support judge finds unsupported (else flag them)."
    )
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    device: str = Field("auto", description="Embedding device: auto (CUDA when present), cpu or cuda.")
    precision: str = Field(
        "auto", description="Embedding precision: auto (fp16 on CUDA, bf16 on AMX CPUs, else fp32), fp32, bf16, fp16."
    )
    chroma_url: str | None = Field(
        None, description="URL of a Chroma server (http://host:port); unset = the embedded store under data_dir."
    )
    chroma_timeout_s: float = Field(
        DEFAULT_CHROMA_TIMEOUT_S,
        gt=0,
        le=600,
        description="Seconds each request to the Chroma server may wait (to connect, send, or for the next byte of "
        "its answer) before the call fails with 503 store_unavailable.",
    )
    api_keys: SecretStr | None = Field(
        None, description="'tenant:key,tenant2:key2' or '@/path/to/file'; unset = no auth, loopback only."
    )
    rate_limit_per_minute: int = Field(DEFAULT_RATE_LIMIT_PER_MINUTE, ge=0, description="Per API key; 0 = off.")
    metrics_key: SecretStr | None = Field(
        None,
        description="The operators' key for /metrics (whose counters name every tenant); unset: /metrics is open "
        "without RAG_API_KEYS (loopback only) and closed with them. Tenant keys never read it.",
    )
    auth_failures_per_minute: int = Field(
        DEFAULT_AUTH_FAILURES_PER_MINUTE,
        ge=0,
        description="Unknown keys allowed per minute from one client address, then 429 for any key from it; 0 = off.",
    )
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, description="Larger request bodies get 413.")
    max_document_chars: int = Field(
        DEFAULT_MAX_DOCUMENT_CHARS,
        ge=1000,
        description="A document whose normalised text is longer gets 413 (rag index skips it); reading stops there.",
    )
    max_chunks_per_document: int = Field(
        DEFAULT_MAX_CHUNKS_PER_DOCUMENT, ge=1, description="An upload that splits into more chunks gets 413."
    )
    log_format: str = Field("json", description="Server logs: json (one object per line) or text.")
    allowed_origins: str | None = Field(
        None,
        description="Origins (scheme://host[:port], comma-separated) of other sites whose pages may write here "
        "(POST/PUT/PATCH/DELETE); the service's own pages and clients that are not browsers always may.",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _allowed_origins(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return ",".join(parse_origins(value))

    def origins(self) -> frozenset[str]:
        """The allowed origins, normalised (empty: only the service's own)."""
        return frozenset(parse_origins(self.allowed_origins or ""))

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not value.replace("-", "").replace("_", "").isalnum() or not 1 <= len(value) <= 40:
            raise ValueError("RAG_COLLECTION must be 1-40 letters, digits, '-' or '_'")
        return value

    @field_validator("chroma_url")
    @classmethod
    def _chroma_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^https?://[^/:]+(:\d+)?/?$", value.strip()):
            raise ValueError("RAG_CHROMA_URL must look like http://host:port")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _api_keys(self) -> Settings:
        # After the model is built, so a failure's message shows the masked SecretStr, never a key.
        if self.api_keys is not None and not self.api_keys.get_secret_value().strip():
            self.api_keys = None
        keys = self.keys()  # fail the start on a bad entry
        if self.metrics_key is not None:
            metrics = self.metrics_key.get_secret_value().strip()
            if not metrics:
                self.metrics_key = None
            elif len(metrics) < MIN_KEY_CHARS:
                raise ValueError(f"RAG_METRICS_KEY must be at least {MIN_KEY_CHARS} characters")
            elif hashlib.sha256(metrics.encode()).digest() in {k.sha256 for k in keys}:
                raise ValueError("RAG_METRICS_KEY must differ from every key in RAG_API_KEYS")
        return self

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in {"json", "text"}:
            raise ValueError("RAG_LOG_FORMAT must be json or text")
        return value

    def keys(self) -> list[ApiKey]:
        """The configured API keys, hashed; empty when the service runs without auth."""
        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else []

    def metrics_key_sha256(self) -> bytes | None:
        """The SHA-256 of the metrics key, or None when none is set."""
        if self.metrics_key is None:
            return None
        return hashlib.sha256(self.metrics_key.get_secret_value().strip().encode()).digest()

    def collection_for(self, tenant: str | None) -> str:
        """The collection of a tenant: the configured one without keys, ``<collection>-<tenant>`` with them."""
        return self.collection if tenant is None else f"{self.collection}-{tenant}"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "cuda"}:
            raise ValueError("RAG_DEVICE must be one of auto, cpu, cuda")
        return value

    @property
    def conversation_path(self) -> Path:
        """Where conversations live: RAG_CONVERSATION_DB, else a file under RAG_DATA_DIR."""
        return self.conversation_db or Path(self.data_dir) / "conversations.sqlite3"

    def lexical_cache_path(self, collection: str) -> Path | None:
        """Where a collection's BM25 index is kept between starts (one file per store and collection), or None."""
        if not self.lexical_cache:
            return None
        where = hashlib.sha1(f"{self.chroma_url or Path(self.data_dir).resolve()}".encode()).hexdigest()[:12]
        return Path(self.data_dir) / "lexical" / f"{collection}-{where}.npz"

    @property
    def jobs_path(self) -> Path:
        """Where ingestion jobs live: RAG_JOBS_DB, else a file under RAG_DATA_DIR (beside the conversations)."""
        return self.jobs_db or Path(self.data_dir) / "jobs.sqlite3"

    @field_validator("precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        if value not in {"auto", "fp32", "bf16", "fp16"}:
            raise ValueError("RAG_PRECISION must be one of auto, fp32, bf16, fp16")
        return value

    @field_validator("llm_base_url")
    @classmethod
    def _llm_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("RAG_LLM_BASE_URL must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _llm_model_given(self) -> Settings:
        if self.llm_base_url and not self.llm_model:
            raise ValueError("RAG_LLM_MODEL is required when RAG_LLM_BASE_URL is set (the server's model name)")
        return self


def describe_settings_error(exc: Exception) -> str:
    """A bad-settings message without the offending input (which may hold an API key)."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    parts = []
    for err in errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{'RAG_' + loc.upper() + ': ' if loc else ''}{err.get('msg', 'invalid')}")
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings once; call only at the edges (CLI, create_app)."""
    return Settings()
