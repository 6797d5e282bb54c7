"""A deterministic 32-d embedder from a hash of the text: no model to load, so tests and their
worker processes start in a moment and the vectors depend only on the text."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt


class HashEmbedder:
    name = "test-hash-32"
    dim = 32

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for row, text in enumerate(texts):
            digest = hashlib.sha256(text.encode("utf-8")).digest()
            out[row] = np.frombuffer(digest, dtype=np.uint8)[:32].astype(np.float32) - 127.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)
