"""Helpers shared by the compressed-store tests: small-store settings and synthetic cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase


def compressed_settings(home: Path, **more: object) -> Settings:
    """Settings whose store switches to codes at 1,000 cases (no RAM budget for exact
    vectors) and reindexes in the foreground (`more`: further store knobs)."""
    store: dict[str, object] = {
        "codebook_min_cases": 1000,
        "exact_ram_budget_mb": 0,
        "reindex_in_background": False,
        "reservoir_size": 256,
        **more,
    }
    return Settings(home=home, store=store)


def add_synthetic(
    memory: CaseMemory, vectors: np.ndarray, label: str = "synthetic case", start: int = 0
) -> list[int]:
    """One case per vector, tasks "<label> <number>" from `start`."""
    cases = [NewCase(task=f"{label} {start + i}") for i in range(len(vectors))]
    return memory.add_many(cases, embeddings=vectors)
