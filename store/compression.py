"""`Compression`: the codebook side of one store in one process, the state the other
compression modules work on: which codebook versions are in force, whether the store keeps
float16 re-rank copies, the reservoir, and what to write for each new vector.

`CaseMemory` owns the indexes and the case rows; the jobs live in modules of their own and
this class holds their results:

- store/code_storage.py: codebook rows, storing a version, codes into case rows, and the
  cross-process check that the versions in force did not move (`CodebookMoved`);
- store/switch.py: the switch from exact vectors to codes;
- store/rerank.py: the float16 re-rank copies and their disk budget;
- store/retrain.py: when a new version is needed, and making it;
- store/reencode.py: the re-encode job that moves every case to it;
- store/reservoir.py: the ring of recent raw vectors upkeep learns from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.settings import Settings
from memory_agent.store import code_storage, reencode, retrain
from memory_agent.store.code_storage import CodebookMoved, InForce, book_from_row
from memory_agent.store.codebook import Codebook
from memory_agent.store.embedder import Vectors
from memory_agent.store.models import CodebookRow, ReservoirRow
from memory_agent.store.reencode import ReEmbed, ReindexWorker
from memory_agent.store.rerank import RERANK_DTYPE, copies_dropped, drop_copies, rerank_bytes
from memory_agent.store.reservoir import RESERVOIR_DTYPE, Reservoir
from memory_agent.store.switch import store_first_codebook

__all__ = [
    "RERANK_DTYPE",
    "RESERVOIR_DTYPE",
    "CodebookMoved",
    "Compression",
    "InForce",
    "ReEmbed",
    "ReindexWorker",
    "rerank_bytes",
]


class Compression:
    """Codebook versions, the re-rank copies' state, the reservoir and upkeep for one store.

    Several processes may write one store: every transaction that writes codes or changes
    which codebooks are in force checks, before it commits, that they did not move
    (store/code_storage.py); `CodebookMoved` says another process moved them first.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.active: Codebook | None = None
        self.pending: Codebook | None = None
        self.books: dict[int, Codebook] = {}
        """Every codebook this process holds, by version (retired ones loaded on demand)."""
        self.ring = Reservoir(settings.store.reservoir_size)
        self._usage_dirty = False
        self.copies_dropped = False
        self.load()

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        self.active = self.pending = None
        self.books = {}
        with self.sessions() as session:
            rows = session.scalars(
                select(CodebookRow).where(CodebookRow.status.in_(("active", "pending")))
            ).all()
            for row in rows:
                book = book_from_row(row)
                self.books[book.version] = book
                if row.status == "active":
                    self.active = book
                else:
                    self.pending = book
            self.ring.load(session.execute(select(ReservoirRow.slot, ReservoirRow.vector)).all())
            self.copies_dropped = copies_dropped(session)

    def book(self, version: int) -> Codebook | None:
        """The codebook of this version (retired ones load on demand, for old codes)."""
        if version not in self.books:
            with self.sessions() as session:
                row = session.get(CodebookRow, version)
                if row is None:
                    return None
                self.books[version] = book_from_row(row)
        return self.books[version]

    def loaded_books(self) -> list[Codebook]:
        """Every codebook this process holds in memory (active, pending, retired ones loaded
        to decode old codes)."""
        return list(self.books.values())

    @property
    def reranks(self) -> bool:
        """Whether this process writes float16 re-rank copies with new codes and re-ranks
        the codes' candidates with them: `store.rerank`, unless the store dropped its copies
        past `store.rerank_disk_budget_mb`."""
        return self.settings.store.rerank and not self.copies_dropped

    def in_force(self) -> InForce:
        """The versions this process encodes with, and whether copies are gone."""
        return (
            self.active.version if self.active is not None else None,
            self.pending.version if self.pending is not None else None,
            self.copies_dropped,
        )

    def moved(self, session: Session, expected: InForce | None = None) -> bool:
        """Whether the active and pending versions in the database, as this session sees
        them, differ from `expected` (by default the ones this process encodes with), or the
        store dropped its re-rank copies since."""
        return code_storage.moved(session, expected or self.in_force())

    def check_in_force(self, session: Session, expected: InForce) -> None:
        """Raise `CodebookMoved` unless the database's versions in force, as this transaction
        sees them, are `expected` (store/code_storage.py); call it after the writes."""
        code_storage.check_in_force(session, expected)

    @property
    def next_version(self) -> int:
        return code_storage.next_version(self.sessions)

    # ------------------------------------------------------------------ writing codes

    def columns_for(self, vectors: Vectors) -> list[dict[str, Any]]:
        """What to store for each new vector: raw float32 before the switch, codes after."""
        n = len(vectors)
        if self.active is None:
            return [{"embedding": np.ascontiguousarray(v, np.float32).tobytes()} for v in vectors]
        self.remember(vectors)
        codes = self.active.encode(vectors)
        self.active.observe(codes, self.settings.store.usage_ema_decay)
        self._usage_dirty = True
        out: list[dict[str, Any]] = [
            {"embedding": None, "code": codes[i].tobytes(), "codebook_version": self.active.version}
            for i in range(n)
        ]
        if self.reranks:
            for i in range(n):
                out[i]["rerank_vector"] = rerank_bytes(vectors[i])
        if self.pending is not None:
            # New cases get the pending version's code too, so reindex never has to revisit them.
            next_codes = self.pending.encode(vectors)
            self.pending.observe(next_codes, self.settings.store.usage_ema_decay)
            for i in range(n):
                out[i]["next_code"] = next_codes[i].tobytes()
                out[i]["next_codebook_version"] = self.pending.version
        return out

    def remember(self, vectors: Vectors) -> None:
        """Put the newest vectors in the reservoir ring (written out by `flush`)."""
        self.ring.remember(vectors)

    @property
    def reservoir(self) -> Vectors:
        """The recent raw vectors as float32 (what training and distortion checks take)."""
        return self.ring.vectors

    @property
    def reservoir_nbytes(self) -> int:
        """Bytes the reservoir takes (the same in the database and in memory)."""
        return self.ring.nbytes

    def flush(self) -> None:
        """Persist the reservoir slots and usage EMA changed since the last flush."""
        if not self.ring.dirty and not self._usage_dirty:
            return
        with self.sessions.begin() as session:
            self.ring.write(session)
            if self._usage_dirty:
                for book in (self.active, self.pending):
                    if book is not None:
                        session.execute(
                            update(CodebookRow)
                            .where(CodebookRow.version == book.version)
                            .values(usage=book.usage_bytes())
                        )
        self.ring.written()
        self._usage_dirty = False

    # ------------------------------------------------------------------ re-rank copies

    def drop_copies(self, rows: int, dim: int) -> None:
        """Drop every float16 re-rank copy, for good (one transaction, store/rerank.py); from
        now on this process ranks by codes alone and other processes follow at their next
        sync or write."""
        drop_copies(self.sessions, rows, dim, self.settings.store.rerank_disk_budget_mb)
        self.copies_dropped = True

    # ------------------------------------------------------------------ the switch

    def switch_to_codes(self, vectors: Vectors, ids: list[int]) -> Codebook:
        """Train the first codebook on the stored raw vectors and replace them by codes
        (store/switch.py: one transaction). The newest raw vectors seed the reservoir."""
        book, dropped = store_first_codebook(self, vectors, ids)
        self.active = book
        self.copies_dropped = dropped
        self.books[book.version] = book
        size = self.settings.store.reservoir_size
        self.remember(vectors[-size:] if size else vectors[:0])
        self.flush()
        return book

    # ------------------------------------------------------------------ upkeep

    def distortion(self) -> float | None:
        """Mean squared error of the active codebook on the recent raw vectors."""
        return retrain.distortion(self)

    def upkeep_reason(self, live_cases: int = 0) -> str | None:
        """Why the active codebook needs a new version now (None: it does not)."""
        return retrain.upkeep_reason(self, live_cases)

    def prepare(self, reason: str, decoded_sample: Vectors, cases: int | None = None) -> Codebook:
        """Make the next version for this reason, pending until reindex finishes
        (store/retrain.py)."""
        book = retrain.store_next_codebook(self, reason, decoded_sample, cases)
        self.pending = book
        self.books[book.version] = book
        return book

    # ------------------------------------------------------------------ reindex

    def remaining(self) -> int:
        """Live cases not yet re-encoded with the pending codebook."""
        return reencode.remaining(self)

    def reencode_batch(self, re_embed: ReEmbed | None) -> int:
        """Re-encode the next batch of cases with the pending codebook; returns how many
        (store/reencode.py). Each batch commits, so a killed job resumes where it stopped."""
        return reencode.reencode_batch(self, re_embed)

    def finish(self) -> Codebook | None:
        """Make the pending codebook active: one UPDATE moves every live case over.

        Returns None (and changes nothing) when some live case still lacks the pending
        version's code; raises `CodebookMoved` when another process got there first.
        """
        target = self.pending
        if not reencode.activate_pending(self):
            return None
        self.active, self.pending = target, None
        return target
