"""The import direction api -> rag <- index is a rule; this test makes it one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "rag": {"fastapi", "starlette", "api", "index", "uvicorn"},
    "index": {"api", "fastapi", "starlette", "uvicorn"},
}
VENDOR_HOMES = {
    # vendor module -> exactly the modules of rag/, index/ and api/ that import it: a vendor import that spreads
    # to another module, or moves without this table following, fails.
    "chromadb": {"rag/store.py"},
    "llama_index": {"index/chunking.py"},
    "torch": {"rag/embedding.py"},
    "transformers": {"rag/embedding.py"},
    "tokenizers": {"rag/embedding.py"},
    "safetensors": {"rag/minilm.py"},
    "onnx": {"rag/minilm.py"},
    "onnxruntime": {"rag/minilm.py"},
    "openai": {"rag/answering/llm.py"},
    "prometheus_client": {"api/metrics.py"},
    # Nowhere: the service runs MiniLM itself; sentence-transformers is only the tests' and benchmarks' reference.
    "sentence_transformers": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering_package_imports_only_allowed_layers(package: str) -> None:
    bad = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path) & FORBIDDEN[package]
    }
    assert not bad, sorted(bad)


@pytest.mark.parametrize("vendor", sorted(VENDOR_HOMES))
def test_layering_vendor_imported_in_one_place(vendor: str) -> None:
    users = {
        str(path.relative_to(ROOT))
        for package in ("rag", "index", "api")
        for path in (ROOT / package).rglob("*.py")
        if vendor in _imports(path)
    }
    assert users == VENDOR_HOMES[vendor], users


# Inside rag/: the base modules import no subpackage and nothing that composes them; answering and retrieval do not
# import each other; evaluation reads answers, it does not build services. service, factory and conversation compose.
RAG_BASE = (
    "rag/config.py",
    "rag/errors.py",
    "rag/types.py",
    "rag/text.py",
    "rag/store.py",
    "rag/locks.py",
    "rag/store_outage.py",
    "rag/embedding.py",
    "rag/minilm.py",
)
COMPOSERS = {"rag.service", "rag.factory", "rag.conversation"}
RAG_FORBIDDEN = {
    **{base: {"rag.answering", "rag.retrieval", "rag.evaluation", *COMPOSERS} for base in RAG_BASE},
    "rag/answering": {"rag.retrieval", "rag.evaluation", *COMPOSERS},
    "rag/retrieval": {"rag.answering", "rag.evaluation", *COMPOSERS},
    "rag/evaluation": {"rag.answering", "rag.retrieval", *COMPOSERS},
}


def _rag_modules(path: Path) -> set[str]:
    """Every rag.* module ``path`` imports, at any depth of the dotted name (rag.answering.features counts as
    rag.answering and rag.answering.features)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1) if parts[0] == "rag")
    return found


@pytest.mark.parametrize("part", sorted(RAG_FORBIDDEN))
def test_layering_inside_rag_imports_go_one_way(part: str) -> None:
    target = ROOT / part
    paths = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
    assert paths, part
    bad = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in _rag_modules(path) & RAG_FORBIDDEN[part]
    }
    assert not bad, sorted(bad)


# Parts of rag/store.py kept in modules of their own (document locks; timeouts, errors and repairs in an outage):
# they speak the store's private formats, so nothing but the store may import them.
STORE_PARTS = {"rag.locks", "rag.store_outage"}


def test_layering_store_parts_imported_only_by_the_store() -> None:
    users = {
        str(path.relative_to(ROOT))
        for package in ("rag", "index", "api")
        for path in (ROOT / package).rglob("*.py")
        if _rag_modules(path) & STORE_PARTS
    }
    assert users == {"rag/store.py"}, users
