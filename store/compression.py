"""The codebook side of the store: which codebook is in force, the raw-vector reservoir,
codeword upkeep, and the resumable re-encoding job.

`CaseMemory` owns the indexes and the case rows; this module owns the codebook rows and the
reservoir, and tells `CaseMemory` what to write for each new vector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.settings import Settings
from memory_agent.store.codebook import Codebook, Codes, nlist_for
from memory_agent.store.embedder import Vectors, normalise
from memory_agent.store.index_sync import lock_vector_writes
from memory_agent.store.models import CaseRow, CodebookRow, ReservoirRow, utcnow
from memory_agent.store.rerank import (
    RERANK_DTYPE,
    copies_dropped,
    copies_fit,
    drop_copies,
    mark_dropped,
    rerank_bytes,
)

RESERVOIR_DTYPE = np.dtype(np.float16)

ReEmbed = Callable[[list[str]], Vectors]
"""Embeds task texts with the store's own embedder (for re-encoding from the case text)."""


InForce = tuple[int | None, int | None, bool]
"""(active codebook version, pending codebook version, whether the store dropped its float16
re-rank copies); None where there is no such version."""


class CodebookMoved(Exception):
    """Another process changed which codebooks are in force since this one loaded them: the
    transaction that found out was rolled back; reload the codebooks and try again."""


class Compression:
    """Codebook versions, the reservoir and upkeep for one store.

    Several processes may write one store. Every transaction that writes codes or changes
    which codebooks are in force ends by checking, under the vector-write lock, that the
    versions in the database are the ones it worked with (`check_in_force`); if another
    process moved them meanwhile it raises `CodebookMoved` and nothing is committed. So a
    code of a retired version is never stored, and no case misses a pending version's code.
    The same check covers the float16 re-rank copies: once another process dropped them
    (store/rerank.py), a write that carries copies is rolled back and made again without.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self._sessions = sessions
        self.active: Codebook | None = None
        self.pending: Codebook | None = None
        self._books: dict[int, Codebook] = {}
        # float16: the reservoir is training data for upkeep, and its bytes count per case.
        self._reservoir = np.zeros((0, 0), RESERVOIR_DTYPE)
        self._reservoir_next = 0
        self._reservoir_dirty: set[int] = set()
        self._usage_dirty = False
        self.copies_dropped = False
        self.load()

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        self.active = self.pending = None
        self._books = {}
        with self._sessions() as session:
            rows = session.scalars(
                select(CodebookRow).where(CodebookRow.status.in_(("active", "pending")))
            ).all()
            for row in rows:
                book = _book_from_row(row)
                self._books[book.version] = book
                if row.status == "active":
                    self.active = book
                else:
                    self.pending = book
            slots = session.execute(select(ReservoirRow.slot, ReservoirRow.vector)).all()
            self.copies_dropped = copies_dropped(session)
        if slots:
            dim = len(slots[0][1]) // RESERVOIR_DTYPE.itemsize
            self._reservoir = np.zeros((len(slots), dim), RESERVOIR_DTYPE)
            for position, (_slot, blob) in enumerate(sorted(slots)):
                self._reservoir[position] = np.frombuffer(blob, RESERVOIR_DTYPE)
            self._reservoir_next = len(slots) % max(self.settings.store.reservoir_size, 1)

    def book(self, version: int) -> Codebook | None:
        """The codebook of this version (retired ones load on demand, for old codes)."""
        if version not in self._books:
            with self._sessions() as session:
                row = session.get(CodebookRow, version)
                if row is None:
                    return None
                self._books[version] = _book_from_row(row)
        return self._books[version]

    def loaded_books(self) -> list[Codebook]:
        """Every codebook this process holds in memory (active, pending, retired ones loaded
        to decode old codes)."""
        return list(self._books.values())

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
        rows = session.execute(
            select(CodebookRow.status, CodebookRow.version).where(
                CodebookRow.status.in_(("active", "pending"))
            )
        ).all()
        found = {
            status: sorted(v for s, v in rows if s == status) for status in ("active", "pending")
        }
        active, pending, dropped = expected or self.in_force()
        want = {
            status: [] if v is None else [v]
            for status, v in zip(("active", "pending"), (active, pending), strict=True)
        }
        return found != want or copies_dropped(session) != dropped

    def check_in_force(self, session: Session, expected: InForce) -> None:
        """Raise `CodebookMoved` unless the database's active and pending versions, as this
        transaction sees them, are `expected`. Call it after the transaction's own writes:
        it takes the vector-write lock, so no other such transaction commits in between."""
        lock_vector_writes(session)
        if self.moved(session, expected):
            raise CodebookMoved(f"the codebooks in force are no longer {expected}")

    @property
    def next_version(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.max(CodebookRow.version))) or 0) + 1

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
        size = self.settings.store.reservoir_size
        if size == 0 or len(vectors) == 0:
            return
        if self._reservoir.shape[1] != vectors.shape[1]:
            self._reservoir = np.zeros((0, vectors.shape[1]), RESERVOIR_DTYPE)
        for vector in vectors[-size:].astype(RESERVOIR_DTYPE):
            slot = self._reservoir_next
            if slot >= len(self._reservoir):
                self._reservoir = np.vstack([self._reservoir, vector[None, :]])
            else:
                self._reservoir[slot] = vector
            self._reservoir_dirty.add(slot)
            self._reservoir_next = (slot + 1) % size

    @property
    def reservoir(self) -> Vectors:
        """The recent raw vectors as float32 (what training and distortion checks take)."""
        return self._reservoir.astype(np.float32)

    @property
    def reservoir_nbytes(self) -> int:
        """Bytes the reservoir takes (the same in the database and in memory)."""
        return int(self._reservoir.nbytes)

    def flush(self) -> None:
        """Persist the reservoir slots and usage EMA changed since the last flush."""
        if not self._reservoir_dirty and not self._usage_dirty:
            return
        with self._sessions.begin() as session:
            if self._reservoir_dirty:
                slots = sorted(self._reservoir_dirty)
                session.execute(delete(ReservoirRow).where(ReservoirRow.slot.in_(slots)))
                session.execute(
                    insert(ReservoirRow),
                    [{"slot": s, "vector": self._reservoir[s].tobytes()} for s in slots],
                )
            if self._usage_dirty:
                for book in (self.active, self.pending):
                    if book is not None:
                        session.execute(
                            update(CodebookRow)
                            .where(CodebookRow.version == book.version)
                            .values(usage=book.usage_bytes())
                        )
        self._reservoir_dirty.clear()
        self._usage_dirty = False

    # ------------------------------------------------------------------ re-rank copies

    def drop_copies(self, rows: int, dim: int) -> None:
        """Drop every float16 re-rank copy, for good (one transaction, store/rerank.py); from
        now on this process ranks by codes alone and other processes follow at their next
        sync or write."""
        drop_copies(self._sessions, rows, dim, self.settings.store.rerank_disk_budget_mb)
        self.copies_dropped = True

    # ------------------------------------------------------------------ the switch

    def switch_to_codes(self, vectors: Vectors, ids: list[int]) -> Codebook:
        """Train the first codebook on the stored raw vectors and replace them by codes.

        One transaction: either every live case has a code and no raw vector, or nothing
        changed. The newest raw vectors seed the reservoir.
        """
        sample = _sample(vectors, self.settings.store.codebook_train_sample)
        book = Codebook.train(
            sample,
            version=self.next_version,
            m=self.settings.store.code_bytes,
            opq=True,
            cases=len(vectors),
            reduce_to=self.settings.store.codebook_dim,
        )
        codes = book.encode(vectors)
        # Every stored case gets a copy at the switch, so a store already past the copies'
        # disk budget starts without them (and says so, in the same transaction).
        keep = self.reranks and copies_fit(self.settings, len(vectors), book.dim)
        dropped = self.copies_dropped or (self.settings.store.rerank and not keep)
        with self._storing(book, "active", "first") as session:
            rerank = vectors if keep else None
            _write_codes(session, ids, codes, book.version, column="code", rerank=rerank)
            if dropped and not self.copies_dropped:
                mark_dropped(
                    session, len(vectors), book.dim, self.settings.store.rerank_disk_budget_mb
                )
            self.check_in_force(session, (book.version, None, dropped))
            # A raw vector another process committed after `vectors` were read would
            # outlive the switch: then switch again later, from all of them.
            raw_left = session.scalar(
                select(func.count()).select_from(CaseRow).where(CaseRow.embedding.is_not(None))
            )
            if raw_left:
                raise CodebookMoved(f"{raw_left} raw vector(s) arrived during the switch")
        self.active = book
        self.copies_dropped = dropped
        self._books[book.version] = book
        self.remember(
            vectors[-self.settings.store.reservoir_size :]
            if self.settings.store.reservoir_size
            else vectors[:0]
        )
        self.flush()
        return book

    @contextmanager
    def _storing(self, book: Codebook, status: str, reason: str) -> Iterator[Session]:
        """A transaction that stores a new codebook version; more writes go in its body.
        Another process storing the same version number first is `CodebookMoved`."""
        try:
            with self._sessions.begin() as session:
                session.add(_row_from_book(book, status, reason))
                session.flush()
                yield session
        except IntegrityError as exc:
            raise CodebookMoved(str(exc)) from exc

    # ------------------------------------------------------------------ upkeep

    def distortion(self) -> float | None:
        """Mean squared error of the active codebook on the recent raw vectors."""
        if self.active is None or len(self._reservoir) == 0:
            return None
        return self.active.measure_distortion(self.reservoir)

    def upkeep_reason(self, live_cases: int = 0) -> str | None:
        """Why the active codebook needs a new version now (None: it does not)."""
        book = self.active
        if book is None or self.pending is not None:
            return None
        # A codebook shaped for a small store probes too few, too wide lists once the store
        # has grown many times over: retrain with coarse lists sized for the new count. And
        # one trained on fewer cases than a full training sample has seen little of what the
        # store now holds (after a shift, mostly the old data): retrain it on the float16
        # copies as the store doubles, until it has had a full sample.
        grown = live_cases >= self.settings.store.codebook_growth_factor * max(book.trained_on, 1)
        sample = min(live_cases, self.settings.store.codebook_train_sample)
        undertrained = book.trained_on < self.settings.store.codebook_train_sample
        if grown and (nlist_for(live_cases, sample) > book.nlist or undertrained):
            return "growth"
        if len(self._reservoir) < min(self.settings.store.reservoir_size, 256):
            return None
        distortion = self.distortion()
        if distortion is not None and distortion > self.settings.store.distortion_bound * max(
            book.distortion, 1e-9
        ):
            return "distortion"
        dead = book.dead_codewords(self.settings.store.dead_code_threshold)
        if dead >= self.settings.store.dead_code_reset_fraction * book.usage.size:
            return "dead_codes"
        return None

    def prepare(self, reason: str, decoded_sample: Vectors, cases: int | None = None) -> Codebook:
        """Make the next version (pending until reindex finishes) for this reason.

        `dead_codes`: the active codebook with its dead codewords re-seeded from the
        reservoir. `distortion` (or `manual`): retrained on the reservoir plus a sample of the
        stored cases' decoded codes, so the new version fits where the data now lies without
        forgetting where it was.
        """
        assert self.active is not None
        version = self.next_version
        recent = self.reservoir  # one float32 copy of the float16 ring for all uses below
        if reason == "dead_codes":
            book = self.active.with_dead_codes_reset(
                recent, self.settings.store.dead_code_threshold, version=version, seed=version
            )
        else:
            train = np.vstack([recent, decoded_sample]) if len(recent) else decoded_sample
            book = Codebook.train(
                normalise(_sample(train, self.settings.store.codebook_train_sample)),
                version=version,
                m=self.settings.store.code_bytes,
                opq=True,
                cases=cases,
                reduce_to=self.settings.store.codebook_dim,
            )
            if len(recent):
                # The drift check compares the distortion on the reservoir (raw, recent) with
                # this baseline, so measure it the same way: decoded codes are smoother than
                # raw vectors, and a baseline taken on them made every codebook retrained
                # from them look drifted at once (a retrain loop at 540k cases).
                book.distortion = book.measure_distortion(recent)
        with self._storing(book, "pending", reason) as session:
            self.check_in_force(session, (self.active.version, version, self.copies_dropped))
        self.pending = book
        self._books[version] = book
        return book

    # ------------------------------------------------------------------ reindex

    def remaining(self) -> int:
        """Live cases not yet re-encoded with the pending codebook."""
        if self.pending is None:
            return 0
        with self._sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(CaseRow).where(*_todo(self.pending.version))
                )
                or 0
            )

    def reencode_batch(self, re_embed: ReEmbed | None) -> int:
        """Re-encode the next batch of cases with the pending codebook; returns how many.

        The source is the raw vector where one is kept, else its float16 re-rank copy, else
        the case text re-embedded by the store's embedder, else (vectors supplied by the
        caller, no embedder known) the old code decoded. Each batch commits on its own, so a
        killed job resumes where it stopped.
        """
        target = self.pending
        if target is None:  # another thread reloaded: the job was finished elsewhere
            raise CodebookMoved("no pending codebook any more")
        with self._sessions() as session:
            rows = session.execute(
                select(
                    CaseRow.id,
                    CaseRow.task,
                    CaseRow.embedding,
                    CaseRow.rerank_vector,
                    CaseRow.code,
                    CaseRow.codebook_version,
                )  # fmt: skip
                .where(*_todo(target.version))
                .order_by(CaseRow.id)
                .limit(self.settings.store.reindex_batch_size)
            ).all()
        if not rows:
            return 0
        vectors = np.zeros((len(rows), target.dim), np.float32)
        need_text: list[int] = []
        for position, (_id, _task, raw, half, code, version) in enumerate(rows):
            if raw is not None:
                vectors[position] = np.frombuffer(raw, np.float32)
            elif half is not None:
                vectors[position] = np.frombuffer(half, RERANK_DTYPE)
            elif re_embed is not None:
                need_text.append(position)
            elif code is not None and version is not None and (book := self.book(version)):
                vectors[position] = book.decode(np.frombuffer(code, np.uint8)[None, :])[0]
        if need_text:
            vectors[need_text] = re_embed([rows[p][1] for p in need_text]) if re_embed else 0.0
        codes = target.encode(normalise(vectors))
        expected = self.in_force()
        with self._sessions.begin() as session:
            _write_codes(session, [r[0] for r in rows], codes, target.version, column="next_code")
            # Another process may have finished this job (or replaced the codebook) meanwhile.
            self.check_in_force(session, expected)
        return len(rows)

    def finish(self) -> Codebook | None:
        """Make the pending codebook active: one UPDATE moves every live case over.

        Returns None (and changes nothing) when some live case still lacks the pending
        version's code; raises `CodebookMoved` when another process got there first.
        """
        target, old = self.pending, self.active
        if target is None:  # another thread reloaded: the job was finished elsewhere
            raise CodebookMoved("no pending codebook any more")
        expected = self.in_force()
        try:
            with self._sessions.begin() as session:
                session.execute(
                    update(CaseRow)
                    .where(CaseRow.next_codebook_version == target.version)
                    .values(
                        code=CaseRow.next_code,
                        codebook_version=target.version,
                        next_code=None,
                        next_codebook_version=None,
                        embedding=None,  # a raw vector a writer left before the switch, too
                    )
                )
                self.check_in_force(session, expected)
                # A case written after the last batch by a process that had not yet seen the
                # pending version has no code of it: not done, the caller goes on.
                left = session.scalar(
                    select(func.count())
                    .select_from(CaseRow)
                    .where(
                        CaseRow.deleted_at.is_(None),
                        or_(
                            CaseRow.codebook_version.is_(None),
                            CaseRow.codebook_version != target.version,
                        ),
                    )
                )
                if left:
                    raise _NotDone
                if old is not None:
                    session.execute(
                        update(CodebookRow)
                        .where(CodebookRow.version == old.version)
                        .values(status="retired", usage=old.usage_bytes())
                    )
                session.execute(
                    update(CodebookRow)
                    .where(CodebookRow.version == target.version)
                    .values(status="active", usage=target.usage_bytes())
                )
        except _NotDone:
            return None
        self.active, self.pending = target, None
        return target


class _NotDone(Exception):
    """Rolls back a `finish` that found cases without the pending version's code."""


def _todo(version: int) -> tuple[Any, ...]:
    return (
        CaseRow.deleted_at.is_(None),
        or_(CaseRow.next_codebook_version.is_(None), CaseRow.next_codebook_version != version),
    )


def _write_codes(
    session: Session,
    ids: list[int],
    codes: Codes,
    version: int,
    column: str,
    rerank: Vectors | None = None,
) -> None:
    """Store codes of `version` in `column`; with `rerank` (the raw vectors, at the switch)
    also their float16 re-rank copies."""
    version_column = "codebook_version" if column == "code" else "next_codebook_version"
    values: dict[str, Any] = {column: bindparam("b_code"), version_column: version}
    if column == "code":
        values["embedding"] = None
    if rerank is not None:
        values["rerank_vector"] = bindparam("b_half")
    table: Any = CaseRow.__table__
    params: list[dict[str, Any]] = [
        {"b_id": i, "b_code": codes[p].tobytes()} for p, i in enumerate(ids)
    ]
    if rerank is not None:
        for p, row in enumerate(params):
            row["b_half"] = rerank_bytes(rerank[p])
    session.connection().execute(
        update(table).where(table.c.id == bindparam("b_id")).values(values), params
    )


def _sample(vectors: Vectors, limit: int) -> Vectors:
    if len(vectors) <= limit:
        return vectors
    rng = np.random.default_rng(len(vectors))
    return vectors[np.sort(rng.choice(len(vectors), size=limit, replace=False))]


def _book_from_row(row: CodebookRow) -> Codebook:
    return Codebook.from_bytes(
        row.blob,
        version=row.version,
        usage=row.usage,
        distortion=row.distortion,
        trained_on=row.trained_on,
    )


def _row_from_book(book: Codebook, status: str, reason: str) -> CodebookRow:
    return CodebookRow(
        version=book.version,
        status=status,
        reason=reason,
        dim=book.dim,
        code_size=book.code_size,
        blob=book.to_bytes(),
        usage=book.usage_bytes(),
        distortion=book.distortion,
        trained_on=book.trained_on,
        created_at=utcnow(),
    )


class ReindexWorker:
    """Runs the re-encode job in a daemon thread; `stop()` ends it between batches."""

    def __init__(self, job: Callable[[threading.Event], Any]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=job, args=(self._stop,), daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
