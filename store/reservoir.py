"""The reservoir: a ring of the most recent raw embeddings, the data codebook upkeep learns
from once the store keeps only codes (dead codewords are re-seeded from it, drift is measured
on it, retrains mix it in). Kept as float16, in memory and in `vector_reservoir` rows alike:
its bytes count per case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from memory_agent.store.embedder import Vectors
from memory_agent.store.models import ReservoirRow

RESERVOIR_DTYPE = np.dtype(np.float16)


class Reservoir:
    """The ring in memory, and which of its slots changed since they were last written."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = np.zeros((0, 0), RESERVOIR_DTYPE)
        self._next = 0
        self._dirty: set[int] = set()

    def load(self, slots: Sequence[Any]) -> None:
        """Take the stored (slot, vector) rows; none stored leaves the ring as it is."""
        if not slots:
            return
        dim = len(slots[0][1]) // RESERVOIR_DTYPE.itemsize
        self._ring = np.zeros((len(slots), dim), RESERVOIR_DTYPE)
        for position, (_slot, blob) in enumerate(sorted(slots)):
            self._ring[position] = np.frombuffer(blob, RESERVOIR_DTYPE)
        self._next = len(slots) % max(self.size, 1)

    def remember(self, vectors: Vectors) -> None:
        """Put the newest vectors in the ring (written out by `write`)."""
        if self.size == 0 or len(vectors) == 0:
            return
        if self._ring.shape[1] != vectors.shape[1]:
            self._ring = np.zeros((0, vectors.shape[1]), RESERVOIR_DTYPE)
        for vector in vectors[-self.size :].astype(RESERVOIR_DTYPE):
            slot = self._next
            if slot >= len(self._ring):
                self._ring = np.vstack([self._ring, vector[None, :]])
            else:
                self._ring[slot] = vector
            self._dirty.add(slot)
            self._next = (slot + 1) % self.size

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def vectors(self) -> Vectors:
        """The recent raw vectors as float32 (what training and distortion checks take)."""
        return self._ring.astype(np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes the ring takes (the same in the database and in memory)."""
        return int(self._ring.nbytes)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def write(self, session: Session) -> None:
        """Write the changed slots in the caller's transaction; `written` once it commits."""
        if not self._dirty:
            return
        slots = sorted(self._dirty)
        session.execute(delete(ReservoirRow).where(ReservoirRow.slot.in_(slots)))
        session.execute(
            insert(ReservoirRow), [{"slot": s, "vector": self._ring[s].tobytes()} for s in slots]
        )

    def written(self) -> None:
        self._dirty.clear()
