"""Keeping each process's in-memory index in step with the database (DESIGN.md, "Scale").

Every write that changes which vectors are searchable appends a row to `vector_changes` in
the same transaction: the namespace, `add` or `remove`, the case ids, and which CaseMemory
wrote it. Rows are numbered in commit order: SQLite has one writer at a time, and on
PostgreSQL the writer takes a transaction-scoped advisory lock before numbering its row, so
a row numbered n is committed before n + 1 is numbered and a reader that has seen n never
misses a smaller number later. A process remembers the last number it applied and, before
searching, applies the rows after it that other writers made: adds are read back as codes
(or vectors, before the first codebook) and indexed, removes leave the index. A new codebook
version, or a log pruned past what the process has seen, makes it rebuild instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session

from memory_agent.store.change_models import VectorChangeRow
from memory_agent.store.database import become_sqlite_writer

# Stable key for the advisory lock that orders change numbers on PostgreSQL.
_CHANGE_LOCK_KEY = 7_204_118_935
# And for the one that lets one process at a time run the re-encode job.
_REINDEX_LOCK_KEY = 7_204_118_936


@dataclass(frozen=True)
class Change:
    seq: int
    namespace: str
    op: str  # "add" or "remove"
    case_ids: npt.NDArray[np.int64]
    writer: str


def log_change(
    session: Session, namespace: str, op: str, case_ids: Sequence[int], writer: str
) -> None:
    """Record, inside the caller's transaction, that these cases were added or removed."""
    if not case_ids:
        return
    lock_vector_writes(session)
    session.add(
        VectorChangeRow(
            namespace=namespace,
            op=op,
            case_ids=np.asarray(case_ids, dtype="<i8").tobytes(),
            writer=writer,
        )
    )
    session.flush()


def lock_vector_writes(session: Session) -> None:
    """Serialise this transaction with every other one that writes codes or codebooks, until
    it ends. PostgreSQL: a transaction-scoped advisory lock (take it after the transaction's
    row writes, so two transactions never wait on each other's rows and on it crosswise).
    SQLite: the transaction's first write already holds the database's one write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHANGE_LOCK_KEY})


def lock_vector_writes_first(session: Session) -> None:
    """`lock_vector_writes` for a transaction that must read under the lock before it writes
    (check-and-insert: an import skipping the cases already stored). Take it as the
    transaction's first statement. PostgreSQL: the same advisory lock (the transaction then
    only inserts new rows, so it never waits on another's rows while holding it). SQLite: a
    write that changes nothing, which makes the transaction the database's one writer before
    it reads (a transaction that read first could not become the writer once another one
    committed)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHANGE_LOCK_KEY})
    else:
        become_sqlite_writer(session)


@contextmanager
def reindex_job(engine: Engine, *, wait: bool) -> Iterator[bool]:
    """Hold the right to run the re-encode job; yields whether this process got it.

    Every writing process may start the job, and on PostgreSQL two of them finishing at once
    can deadlock on the same rows; so one runs it and the others leave it (`wait=False`) or
    queue (`wait=True`). A session-level advisory lock, released on exit or when the process
    dies. SQLite: its single write lock already serialises the job's batches.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        key = {"k": _REINDEX_LOCK_KEY}
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), key)
            got = True
        else:
            got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), key))
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), key)
                conn.commit()


def log_bounds(session: Session) -> tuple[int, int]:
    """(oldest, newest) change number still in the log; (0, 0) when it is empty."""
    low, high = session.execute(
        select(func.min(VectorChangeRow.seq), func.max(VectorChangeRow.seq))
    ).one()
    return int(low or 0), int(high or 0)


def changes_after(session: Session, seq: int, until: int) -> list[Change]:
    rows = session.scalars(
        select(VectorChangeRow)
        .where(VectorChangeRow.seq > seq, VectorChangeRow.seq <= until)
        .order_by(VectorChangeRow.seq)
    ).all()
    return [
        Change(
            seq=int(r.seq),
            namespace=r.namespace,
            op=r.op,
            case_ids=np.frombuffer(r.case_ids, dtype="<i8").astype(np.int64),
            writer=r.writer,
        )
        for r in rows
    ]


def prune(session: Session, keep: int) -> None:
    """Drop all but the newest `keep` changes; a process further behind rebuilds its index."""
    _, high = log_bounds(session)
    if high > keep:
        session.execute(delete(VectorChangeRow).where(VectorChangeRow.seq <= high - keep))
