"""Precision choice, the small backends' agreement with PyTorch and each other, length-sorted batching, lazy imports."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from rag.embedding import SentenceTransformerEmbedder, choose_precision, token_batches
from tests.conftest import ROOT, SEEDS

AMX = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
NO_AMX = {"avx512f", "avx512_bf16", "avx512_vnni"}


@pytest.mark.parametrize(
    ("device", "precision", "flags", "expected"),
    [
        ("cpu", "auto", AMX, "bf16"),
        ("cpu", "auto", NO_AMX, "fp32"),  # AVX-512 bf16 without AMX measured slower than fp32
        ("cpu", "auto", set(), "fp32"),
        ("cpu", "auto", {"amx_tile"}, "fp32"),
        ("cuda", "auto", NO_AMX, "fp16"),
        ("cpu", "fp32", AMX, "fp32"),
        ("cpu", "bf16", NO_AMX, "bf16"),
        ("cpu", "fp16", AMX, "fp32"),
        ("cuda", "fp32", set(), "fp32"),
    ],
)
def test_choose_precision_by_device_and_cpu(device: str, precision: str, flags: set[str], expected: str) -> None:
    assert choose_precision(device=device, precision=precision, flags=flags) == expected


def test_choose_precision_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="precision"):
        choose_precision(device="cpu", precision="int4")


def test_token_batches_cover_every_text_once_within_budget() -> None:
    lengths = [5, 200, 17, 256, 3, 3, 90, 120, 64, 7] * 13
    batches = token_batches(lengths, batch_tokens=1024, max_batch=16)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert width * len(batch) <= 1024 or len(batch) == 1
        assert len(batch) <= 16
    # Sorted by length: padding waste is small.
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded <= 1.15 * sum(lengths)


def _real_texts() -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt")))
    sentences = [s.strip() for s in text.replace("\n", " ").split(". ") if s.strip()]
    return sentences[:20] + [text[:1500], text[:40], "why did the VRAEM faction attack in February?"] + [text] * 2


@pytest.fixture(scope="module")
def fp32_torch_vectors() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from rag.embedding import model_path

    model = SentenceTransformer(str(model_path()), device="cpu")
    model.max_seq_length = 256
    return np.asarray(model.encode(_real_texts(), normalize_embeddings=True), dtype=np.float32)


@pytest.mark.parametrize("small_backend", ["onnx", "numpy"])
def test_small_backend_matches_sentence_transformers_fp32(small_backend: str, fp32_torch_vectors: np.ndarray) -> None:
    embedder = SentenceTransformerEmbedder(small_backend=small_backend)
    vectors = embedder.embed(_real_texts())
    assert vectors.shape == fp32_torch_vectors.shape
    cosines = (vectors * fp32_torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.9999
    query = embedder.embed_query(_real_texts()[-3])
    assert float(query @ fp32_torch_vectors[-3]) >= 0.9999


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_torch_backend_precision_close_to_fp32(precision: str, fp32_torch_vectors: np.ndarray) -> None:
    model = SentenceTransformerEmbedder(device="cpu", precision=precision)
    assert model.precision == precision
    texts = _real_texts() * 3  # over the small-batch threshold, so the bulk (torch) backend runs
    vectors = model.embed(texts)
    cosines = (vectors * np.concatenate([fp32_torch_vectors] * 3)).sum(axis=1)
    assert cosines.min() >= 0.999


@pytest.fixture(scope="module")
def numpy_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(small_backend="numpy")


@pytest.fixture(scope="module")
def onnx_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(small_backend="onnx")


def test_small_backend_auto_picks_onnx_where_installed() -> None:
    assert SentenceTransformerEmbedder().small_backend == "onnx"


def test_onnx_backend_matches_numpy_backend(
    numpy_embedder: SentenceTransformerEmbedder, onnx_embedder: SentenceTransformerEmbedder
) -> None:
    texts = _real_texts()  # 1 to 256 tokens: batches with padding
    cosines = (onnx_embedder.embed(texts) * numpy_embedder.embed(texts)).sum(axis=1)
    assert cosines.min() >= 0.99999
    for text in texts[:5] + texts[-3:-1]:
        assert float(onnx_embedder.embed_query(text) @ numpy_embedder.embed_query(text)) >= 0.99999


def test_onnx_backend_span_vectors_match_numpy_backend(
    numpy_embedder: SentenceTransformerEmbedder, onnx_embedder: SentenceTransformerEmbedder
) -> None:
    texts = [t for t in _real_texts() if len(t) > 200][:3] + ["Lima is the capital. It lies on the coast."]
    spans = [[(m.start(), m.end()) for m in re.finditer(r"[^.]+\.?", t) if m.group().strip()] for t in texts]
    onnx_chunks, onnx_spans = onnx_embedder.embed_chunks(texts, spans)
    numpy_chunks, numpy_spans = numpy_embedder.embed_chunks(texts, spans)
    assert (onnx_chunks * numpy_chunks).sum(axis=1).min() >= 0.99999
    for got, want, text_spans in zip(onnx_spans, numpy_spans, spans, strict=True):
        assert got.shape == want.shape == (len(text_spans), 384)
        filled = np.linalg.norm(want, axis=1) > 0  # spans past the 256-token window have no tokens
        assert (got[filled] * want[filled]).sum(axis=1).min() >= 0.99999


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"precision": "int8"}, "precision"), ({"small_backend": "torch"}, "small_backend")]
)
def test_embedder_rejects_unknown_settings(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SentenceTransformerEmbedder(**kwargs)


def test_ask_path_never_imports_torch(seeded_settings) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys\n"
        "import api.cli\n"
        "from rag.factory import build_service\n"
        "from rag.config import Settings\n"
        f"s = Settings(data_dir={str(seeded_settings.data_dir)!r}, collection={seeded_settings.collection!r}, "
        f"chroma_url={seeded_settings.chroma_url!r})\n"
        "a = build_service(s).ask('why did the VRAEM faction attack in February?')\n"
        "assert a.citations, a\n"
        "import api.app\n"
        "bad = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print('IMPORTED', bad, 'onnxruntime' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED [] True" in out.stdout  # the question was embedded by ONNX Runtime, not torch
