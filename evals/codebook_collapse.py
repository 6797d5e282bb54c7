"""The codebook-collapse experiment, through the store's public API only: a stream whose
distribution shifts, into a `CaseMemory` with and without its automatic codebook upkeep.

Phase A's first cases train the store's first codebook (the automatic switch to codes);
then the stream moves to a different region of the space (phase B: other clusters in another
subspace). Without upkeep (`codebook_upkeep` off) the codebook fitted to A stays: codewords
stop being used (dead codewords pile up) and recall on the new data is what the stale
codebook gives. With upkeep the store itself notices, after a write, that the distortion on
its recent vectors has outgrown the codebook's (a full retrain: rotation, coarse lists and
codewords) or that too many codewords are dead (MBC re-seeding), makes a new version and
re-encodes every case (`reindex`, which a store with `reindex_in_background` runs by
itself; here the driver calls it, as the background job would, so each step's figures are
taken after it finished).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memory_agent.evals.synthetic_vectors import SyntheticSpace, exact_top_k, recall
from memory_agent.settings import Settings


@dataclass
class CollapseCurve:
    """Per step of the stream: cases stored, dead codewords, recall of queries like the
    newest data (exact top-10 of all stored cases, found in the store's shortlist)."""

    upkeep: bool
    seen: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    shortlist_recall: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def collapse_curves(
    *,
    steps_before: int = 2,
    steps: int = 8,
    per_step: int = 1000,
    queries: int = 100,
    code_bytes: int = 20,
    codebook_dim: int | None = 120,
    shortlist: int = 50,
    reservoir: int = 512,
    seed: int = 0,
    folder: Path | None = None,
) -> tuple[CollapseCurve, CollapseCurve]:
    """Run the shifted stream into two stores (without, then with upkeep); both curves.

    The stores keep their float16 copies (upkeep retrains and re-encodes from them: without
    them only the stale codebook's decoded codes are left, and a codebook retrained on those
    learns the collapse back), but re-rank only the shortlist itself
    (`rerank_candidates` = `shortlist`): the set the codes propose is what is measured, as
    the float16 re-rank of a wider set would hide part of what a stale codebook costs.
    """
    before = SyntheticSpace(seed=seed)
    after = SyntheticSpace(seed=seed + 1, latent=32)
    stream = np.vstack(
        [
            before.sample(steps_before * per_step, seed=seed + 20),
            after.sample((steps - steps_before) * per_step, seed=seed + 21),
        ]
    )
    probes = (before.sample(queries, seed=seed + 30), after.sample(queries, seed=seed + 31))
    with tempfile.TemporaryDirectory(prefix="collapse-") as scratch:
        root = folder or Path(scratch)
        curves = tuple(
            _stream(
                root / ("upkeep" if upkeep else "frozen"),
                upkeep=upkeep,
                stream=stream,
                probes=probes,
                steps_before=steps_before,
                per_step=per_step,
                store={
                    "codebook_min_cases": 1000,
                    "exact_ram_budget_mb": 0,
                    "code_bytes": code_bytes,
                    "codebook_dim": codebook_dim,
                    "rerank": True,
                    "rerank_candidates": shortlist,
                    "reservoir_size": reservoir,
                    "reindex_in_background": False,
                    "codebook_upkeep": upkeep,
                },
                shortlist=shortlist,
            )
            for upkeep in (False, True)
        )
    return curves[0], curves[1]


def _stream(
    home: Path,
    *,
    upkeep: bool,
    stream: np.ndarray,
    probes: tuple[np.ndarray, np.ndarray],
    steps_before: int,
    per_step: int,
    store: dict[str, object],
    shortlist: int,
) -> CollapseCurve:
    from memory_agent.store import CaseMemory, NewCase

    settings = Settings(home=home, store=store)
    curve = CollapseCurve(upkeep=upkeep)
    with CaseMemory(settings, database_url=f"sqlite:///{home / 'collapse.db'}") as memory:
        ids: list[int] = []
        for step in range(1, len(stream) // per_step + 1):
            part = stream[(step - 1) * per_step : step * per_step]
            cases = [NewCase(task=f"case {len(ids) + i}") for i in range(len(part))]
            ids += memory.add_many(cases, embeddings=part, batch_size=per_step)
            if memory.reindex_remaining():
                memory.reindex()
            base = stream[: step * per_step]
            position = np.full(max(ids) + 1, -1, np.int64)
            position[np.asarray(ids)] = np.arange(len(ids))
            # Queries come from where the stream currently is.
            probe = probes[0] if step <= steps_before else probes[1]
            found = memory.nearest(probe, shortlist)[1]
            found = np.where(found >= 0, position[np.clip(found, 0, None)], -1)
            stats = memory.stats()
            curve.seen.append(len(base))
            curve.dead.append(int(stats["dead_codewords"] or 0))
            curve.shortlist_recall.append(recall(found, exact_top_k(probe, base, 10)))
            curve.versions.append(int(stats["codebook_version"] or 0))
    return curve
