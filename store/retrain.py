"""When the active codebook needs a new version (growth, drift, dead codewords), and making
that version: pending until the re-encode job (store/reencode.py) has moved every case."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memory_agent.store.code_storage import check_in_force, storing
from memory_agent.store.codebook import Codebook, nlist_for, training_sample
from memory_agent.store.embedder import Vectors, normalise

if TYPE_CHECKING:
    from memory_agent.store.compression import Compression


def distortion(keeper: Compression) -> float | None:
    """Mean squared error of the active codebook on the recent raw vectors."""
    if keeper.active is None or len(keeper.ring) == 0:
        return None
    return keeper.active.measure_distortion(keeper.reservoir)


def upkeep_reason(keeper: Compression, live_cases: int) -> str | None:
    """Why the active codebook needs a new version now (None: it does not)."""
    book, store = keeper.active, keeper.settings.store
    if book is None or keeper.pending is not None:
        return None
    # A codebook shaped for a small store probes too few, too wide lists once the store has
    # grown many times over: retrain with coarse lists sized for the new count. And one
    # trained on fewer cases than a full training sample has seen little of what the store
    # now holds (after a shift, mostly the old data): retrain it on the float16 copies as
    # the store doubles, until it has had a full sample.
    grown = live_cases >= store.codebook_growth_factor * max(book.trained_on, 1)
    sample = min(live_cases, store.codebook_train_sample)
    undertrained = book.trained_on < store.codebook_train_sample
    if grown and (nlist_for(live_cases, sample) > book.nlist or undertrained):
        return "growth"
    if len(keeper.ring) < min(store.reservoir_size, 256):
        return None
    drift = distortion(keeper)
    if drift is not None and drift > store.distortion_bound * max(book.distortion, 1e-9):
        return "distortion"
    dead = book.dead_codewords(store.dead_code_threshold)
    if dead >= store.dead_code_reset_fraction * book.usage.size:
        return "dead_codes"
    return None


def store_next_codebook(
    keeper: Compression, reason: str, decoded_sample: Vectors, cases: int | None
) -> Codebook:
    """Make and store the next version, pending, for this reason (`CodebookMoved`: another
    process made one first).

    `dead_codes`: the active codebook with its dead codewords re-seeded from the reservoir.
    `distortion` (or `manual`, `growth`): retrained on the reservoir plus a sample of the
    stored cases' vectors, so the new version fits where the data now lies without
    forgetting where it was.
    """
    active, store = keeper.active, keeper.settings.store
    assert active is not None
    version = keeper.next_version
    recent = keeper.reservoir  # one float32 copy of the float16 ring for all uses below
    if reason == "dead_codes":
        book = active.with_dead_codes_reset(
            recent, store.dead_code_threshold, version=version, seed=version
        )
    else:
        train = np.vstack([recent, decoded_sample]) if len(recent) else decoded_sample
        book = Codebook.train(
            normalise(training_sample(train, store.codebook_train_sample)),
            version=version,
            m=store.code_bytes,
            opq=True,
            cases=cases,
            reduce_to=store.codebook_dim,
        )
        if len(recent):
            # The drift check compares the distortion on the reservoir (raw, recent) with
            # this baseline, so measure it the same way: decoded codes are smoother than raw
            # vectors, and a baseline taken on them made every codebook retrained from them
            # look drifted at once (a retrain loop at 540k cases).
            book.distortion = book.measure_distortion(recent)
    with storing(keeper.sessions, book, "pending", reason) as session:
        check_in_force(session, (active.version, version, keeper.copies_dropped))
    return book
