"""The codebook-collapse experiment: a stream whose distribution shifts, with and without
MBC's dead-codeword resets.

Phase A trains the codebook; then the stream moves to a different region of the space
(phase B: other clusters in another subspace). Without resets, codewords fitted to A stop
being used (dead codewords pile up) and recall on the new data is what the stale codebook
gives. With resets, whenever enough codewords are dead they are re-seeded from the recent
vectors and the stored codes re-encoded (a new version), and recall recovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memory_agent.evals.synthetic_vectors import SyntheticSpace, exact_top_k, recall
from memory_agent.store.codebook import Codebook, CodeIndex


@dataclass
class CollapseCurve:
    """Per step of the stream: cases seen, dead codewords, recall of queries like the newest
    data (exact top-10 of all stored cases, found in the shortlist)."""

    resets: bool
    seen: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    shortlist_recall: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def collapse_curves(
    *,
    train: int = 4000,
    steps_before: int = 2,
    steps: int = 8,
    per_step: int = 1000,
    queries: int = 100,
    code_bytes: int = 8,
    shortlist: int = 50,
    decay: float = 0.999,
    threshold: float = 0.05,
    reset_fraction: float = 0.1,
    reservoir: int = 1000,
    seed: int = 0,
) -> tuple[CollapseCurve, CollapseCurve]:
    """Run the shifted stream twice (without, then with resets) and return both curves."""
    before = SyntheticSpace(seed=seed)
    after = SyntheticSpace(seed=seed + 1, latent=32)
    trained = Codebook.train(before.sample(train, seed=seed + 10), version=1, m=code_bytes)
    stream = np.vstack(
        [
            before.sample(steps_before * per_step, seed=seed + 20),
            after.sample((steps - steps_before) * per_step, seed=seed + 21),
        ]
    )
    probes = (before.sample(queries, seed=seed + 30), after.sample(queries, seed=seed + 31))
    curves = []
    for resets in (False, True):
        book = Codebook.from_bytes(
            trained.to_bytes(), version=1, usage=trained.usage_bytes(),
            distortion=trained.distortion, trained_on=trained.trained_on,
        )  # fmt: skip
        curve = CollapseCurve(resets=resets)
        for step in range(1, steps + 1):
            base = stream[: step * per_step]
            fresh = stream[(step - 1) * per_step : step * per_step]
            book.observe(book.encode(fresh), decay)
            dead = book.dead_codewords(threshold)
            if resets and dead >= reset_fraction * book.usage.size:
                recent = base[-reservoir:]
                book = book.with_dead_codes_reset(
                    recent, threshold, version=book.version + 1, seed=step
                )
                # The new version's usage is measured on the data it will now encode.
                book.observe(book.encode(recent), decay)
            index = CodeIndex(book, nprobe=book.nlist)
            index.add_codes(np.arange(len(base), dtype=np.int64), book.encode(base))
            # Queries come from where the stream currently is.
            probe = probes[0] if step <= steps_before else probes[1]
            _, found = index.search(probe, shortlist)
            curve.seen.append(len(base))
            curve.dead.append(book.dead_codewords(threshold))
            curve.shortlist_recall.append(recall(found, exact_top_k(probe, base, 10)))
            curve.versions.append(book.version)
        curves.append(curve)
    return curves[0], curves[1]
