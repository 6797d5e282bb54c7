"""Embedding a text file once for benchmarks, cached on disk (never committed).

The cache is written in chunks of CHUNK lines, each keyed by the hash of its text and the
embedding model (so a file is keyed by its content and the model, and a file that starts
with the same lines as another, such as its first 50k, reuses that one's chunks). A run
that is interrupted (or stopped by `max_seconds`, to share a busy machine) keeps every
finished chunk, and the next run embeds only what is missing. So a 100k-line file is
embedded once, whatever the sizes and settings of the benchmarks that read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from memory_agent.settings import Settings
from memory_agent.store.embedder import Vectors, embedder_from_settings

CHUNK = 4096  # lines per cache file: ~1 minute of MiniLM on a 2-core machine


class EmbeddingIncomplete(Exception):
    """`max_seconds` ran out before every chunk was embedded; run again to resume."""


def read_texts(path: Path, limit: int | None = None) -> list[str]:
    """Non-empty lines of a text file (one task per line)."""
    with path.open(encoding="utf-8") as handle:
        texts = [" ".join(line.split()) for line in handle if line.strip()]
    return texts[:limit] if limit else texts


def cache_folder(model: str, settings: Settings) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)
    return settings.home / "bench-cache" / safe


def chunk_key(model: str, texts: list[str]) -> str:
    """The cache name of one chunk: its lines and the model that embeds them."""
    return hashlib.sha256("\n".join([model, *texts]).encode("utf-8")).hexdigest()[:20]


def embed_file_cached(
    path: Path,
    settings: Settings,
    *,
    max_seconds: float | None = None,
    progress: bool = True,
) -> tuple[Vectors, float]:
    """Embeddings of the lines of `path` (see `read_texts`) and the seconds embedding took
    (summed over the runs that made the cache). Raises `EmbeddingIncomplete` when
    `max_seconds` ran out first (the finished chunks stay cached)."""
    embedder = embedder_from_settings(settings)
    texts = read_texts(path)
    folder = cache_folder(embedder.name, settings)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = range(0, len(texts), CHUNK)
    keys = {start: chunk_key(embedder.name, texts[start : start + CHUNK]) for start in chunks}
    (folder / f"{path.name}.json").write_text(
        json.dumps({"file": str(path), "lines": len(texts), "chunks": list(keys.values())}) + "\n"
    )
    todo = [start for start in chunks if not (folder / f"{keys[start]}.npy").exists()]
    began = time.perf_counter()
    if todo:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        total = sum(min(CHUNK, len(texts) - s) for s in todo)
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), disable=not progress,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"embedding {path.name}", total=total)
            for number, start in enumerate(todo):
                if max_seconds is not None and time.perf_counter() - began > max_seconds:
                    raise EmbeddingIncomplete(
                        f"{len(todo) - number} of {len(chunks)} chunks left in {folder}"
                    )
                part = texts[start : start + CHUNK]
                tick = time.perf_counter()
                vectors = np.ascontiguousarray(embedder.embed(part), dtype=np.float32)
                seconds = time.perf_counter() - tick
                # Write then rename: a chunk file that exists is always complete.
                tmp = folder / f"{keys[start]}.tmp.npy"
                np.save(tmp, vectors)
                (folder / f"{keys[start]}.seconds").write_text(f"{seconds:.3f}\n")
                os.replace(tmp, folder / f"{keys[start]}.npy")
                bar.update(task, advance=len(part))
    vectors = np.vstack([np.load(folder / f"{keys[start]}.npy") for start in chunks])
    seconds = sum(float((folder / f"{keys[s]}.seconds").read_text()) for s in chunks)
    return np.ascontiguousarray(vectors, dtype=np.float32), seconds


def main(argv: list[str] | None = None) -> int:
    """`python -m memory_agent.evals.text_vectors FILE [MAX_SECONDS]`: fill the cache, in
    runs of at most MAX_SECONDS (exit code 3: not finished yet, run again)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(main.__doc__, file=sys.stderr)
        return 2
    limit = float(args[1]) if len(args) > 1 else None
    try:
        vectors, seconds = embed_file_cached(Path(args[0]), Settings(), max_seconds=limit)
    except EmbeddingIncomplete as exc:
        print(f"not finished: {exc}", file=sys.stderr)
        return 3
    print(f"{len(vectors)} vectors, {seconds:.0f} s of embedding", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
