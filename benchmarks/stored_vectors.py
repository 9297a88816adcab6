"""Benchmarks only: an embedder that returns precomputed corpus vectors by the sha1 of a chunk's text.

Embedding SciFact's 12,101 chunks takes about an hour on this shared 2-core machine, so evaluation stores may be
built from vectors computed elsewhere (for the README's figures: the same MiniLM in fp16 on a GPU, our own
chunker, documents built exactly as index/corpus.py builds them; cosine to fp32 vectors about 0.9999).
A folder holds ``<name>_vecs.npy`` (n x 384) and ``<name>_keys.json`` (sha1 hex of each chunk's UTF-8 text, same
order). Any text not found there (questions, answer sentences, a chunk that changed) goes to the real model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


class StoredVectorEmbedder:
    """Looks chunk texts up in stored vectors; everything else is embedded by ``base``."""

    def __init__(self, base: Any, folder: Path) -> None:
        self.base = base
        self.vectors: dict[str, np.ndarray] = {}
        for keys_path in sorted(Path(folder).glob("*_keys.json")):
            vecs = np.load(keys_path.with_name(keys_path.name.replace("_keys.json", "_vecs.npy"))).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)  # fp16 rounding: back to unit length
            keys = json.loads(keys_path.read_text())
            if len(keys) != len(vecs):
                raise ValueError(f"{keys_path}: {len(keys)} keys for {len(vecs)} vectors")
            self.vectors.update(zip(keys, vecs, strict=True))
        self.found = 0
        self.missed = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        missing = []
        for i, text in enumerate(texts):
            vec = self.vectors.get(hashlib.sha1(text.encode("utf-8")).hexdigest())
            if vec is None:
                missing.append(i)
            else:
                out[i] = vec
        self.found += len(texts) - len(missing)
        self.missed += len(missing)
        if missing:
            out[missing] = self.base.embed([texts[i] for i in missing])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.base.embed_query(text))

    def __getattr__(self, name: str) -> Any:  # loaded, load, device, precision: the real model's
        return getattr(self.base, name)
