"""One Settings object for the whole service, read from RAG_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
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
# Calibrated on data by benchmarks/calibrate_threshold.py (see README, "No-answer threshold").
DEFAULT_MIN_ANSWER_SCORE = 0.48
DEFAULT_MAX_ANSWER_SENTENCES = 3
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class Settings(BaseSettings):
    """Every knob of the service; each one is an environment variable with the RAG_ prefix."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the embedded Chroma store and SQLite files live.")
    collection: str = Field(DEFAULT_COLLECTION, description="Name of the (single-tenant) collection.")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="Passages retrieved per question.")
    chunk_tokens: int = Field(DEFAULT_CHUNK_TOKENS, ge=32, le=250)
    chunk_overlap: int = Field(DEFAULT_CHUNK_OVERLAP, ge=0, le=128)
    min_answer_score: float = Field(
        DEFAULT_MIN_ANSWER_SCORE, description="Below this evidence score the answer is a refusal (no_answer)."
    )
    conversation_db: Path | None = Field(
        None,
        description="The SQLite file that holds chat conversations; default <data_dir>/conversations.sqlite3.",
    )
    max_answer_sentences: int = Field(
        DEFAULT_MAX_ANSWER_SENTENCES, ge=1, le=3, description="At most this many sentences in an extractive answer."
    )
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    device: str = Field("auto", description="Embedding device: auto (CUDA when present), cpu or cuda.")
    precision: str = Field(
        "auto", description="Embedding precision: auto (fp16 on CUDA, bf16 on AMX CPUs, else fp32), fp32, bf16, fp16."
    )

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not value.replace("-", "").replace("_", "").isalnum() or not 1 <= len(value) <= 40:
            raise ValueError("RAG_COLLECTION must be 1-40 letters, digits, '-' or '_'")
        return value

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

    @field_validator("precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        if value not in {"auto", "fp32", "bf16", "fp16"}:
            raise ValueError("RAG_PRECISION must be one of auto, fp32, bf16, fp16")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings once; call only at the edges (CLI, create_app)."""
    return Settings()
