"""Embedding a text file once for benchmarks, cached beside the data dir (never committed)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memory_agent.settings import Settings
from memory_agent.store.embedder import Vectors, embedder_from_settings


def read_texts(path: Path, limit: int | None = None) -> list[str]:
    """Non-empty lines of a text file (one task per line)."""
    with path.open(encoding="utf-8") as handle:
        texts = [" ".join(line.split()) for line in handle if line.strip()]
    return texts[:limit] if limit else texts


def embed_texts_cached(
    texts: list[str],
    settings: Settings,
    *,
    on_progress: Callable[[int], None] | None = None,
    batch: int = 256,
) -> tuple[Vectors, float]:
    """Embeddings of `texts` with the configured embedder, and the seconds embedding took.

    Cached under <home>/bench-cache by a hash of the texts and the model, so a benchmark can
    be re-run without paying for the model again (the cached run reports the first timing).
    """
    embedder = embedder_from_settings(settings)
    digest = hashlib.sha256("\n".join([embedder.name, *texts]).encode("utf-8")).hexdigest()[:16]
    cache = settings.home / "bench-cache"
    path = cache / f"{digest}.npy"
    timing = cache / f"{digest}.seconds"
    if path.exists() and timing.exists():
        return np.load(path), float(timing.read_text())
    import time

    start = time.perf_counter()
    parts = []
    for begin in range(0, len(texts), batch):
        parts.append(embedder.embed(texts[begin : begin + batch]))
        if on_progress is not None:
            on_progress(min(batch, len(texts) - begin))
    seconds = time.perf_counter() - start
    vectors = np.ascontiguousarray(np.vstack(parts), dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    timing.write_text(f"{seconds:.3f}\n")
    return vectors, seconds
