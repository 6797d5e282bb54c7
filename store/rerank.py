"""Float16 re-rank copies: what makes a search over codes exact, and the disk budget past
which the store gives them up for codes alone.

Once a store keeps codes, each case may keep a float16 copy of its embedding
(`cases.rerank_vector`). A search asks the in-memory codes for `rerank_candidates`
candidates and re-scores them with their copies, so it returns what exact search returns
whenever the true top-k is among the candidates. The copies cost `dim x 2` bytes a case on
disk (768 at 384-d) and none in RAM.

While every stored case's copy fits `store.rerank_disk_budget_mb` the copies are written and
used. Once the store outgrows it they are dropped, all in one transaction that also writes
the `rerank_copies` row of `store_meta`; from then on no process writes a copy (a writer
checks the row before it commits) and searches rank by codes alone, the form that stays
within 32 bytes a case at 1M. Copies cannot come back: nothing raw is left to make them from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.settings import Settings
from memory_agent.store.database import id_list_value, in_id_list, insert_if_absent
from memory_agent.store.embedder import Vectors
from memory_agent.store.index import Ids, Scores
from memory_agent.store.index_sync import lock_vector_writes
from memory_agent.store.models import CaseRow, StoreMetaRow, utcnow

RERANK_DTYPE = np.dtype(np.float16)  # the copy each case keeps for exact re-ranking
COPIES_KEY = "rerank_copies"
"""The `store_meta` row whose presence says the store dropped its copies for good."""

Halves = dict[int, npt.NDArray[np.float16]]
"""Float16 copies by case id."""


def rerank_bytes(vector: Vectors) -> bytes:
    return np.ascontiguousarray(vector, RERANK_DTYPE).tobytes()


def copy_bytes(rows: int, dim: int) -> int:
    """Disk bytes the copies of `rows` cases of `dim` dimensions take."""
    return rows * dim * RERANK_DTYPE.itemsize


def copies_fit(settings: Settings, rows: int, dim: int) -> bool:
    """Whether the copies of `rows` stored cases fit the disk budget."""
    return copy_bytes(rows, dim) <= settings.store.rerank_disk_budget_mb * 2**20


def copies_dropped(session: Session) -> bool:
    """Whether this store dropped its copies (as this session sees the database)."""
    found = session.scalar(select(StoreMetaRow.key).where(StoreMetaRow.key == COPIES_KEY))
    return found is not None


def stored_cases(session: Session) -> int:
    """Every case row, tombstoned ones too: each holds a copy once the store keeps codes."""
    return int(session.scalar(select(func.count()).select_from(CaseRow)) or 0)


def mark_dropped(session: Session, rows: int, dim: int, budget_mb: float) -> None:
    """Record, in the caller's transaction, that the store keeps no copies from now on (and
    why: how many cases' copies would have taken how much of which budget)."""
    insert_if_absent(
        session,
        StoreMetaRow.__table__,
        {
            "key": COPIES_KEY,
            "value": {
                "kept": False,
                "cases": rows,
                "copy_bytes": copy_bytes(rows, dim),
                "budget_mb": budget_mb,
                "at": utcnow().isoformat(),
            },
        },
    )


def drop_copies(sessions: sessionmaker[Session], rows: int, dim: int, budget_mb: float) -> None:
    """NULL every case's copy and record that the store keeps none, in one transaction: a
    kill at any point leaves either every copy and no record, or the record and no copy.

    The first UPDATE takes its row locks before the vector-write lock, as every writer does
    (PostgreSQL: two transactions never wait on each other's rows and on the lock
    crosswise). A writer that committed copies after that UPDATE but before this transaction
    got the lock is caught by the second UPDATE; every writer that checks after it sees the
    record and stores no copy.
    """
    with sessions.begin() as session:
        _null_copies(session)
        mark_dropped(session, rows, dim, budget_mb)
        lock_vector_writes(session)
        _null_copies(session)


def _null_copies(session: Session) -> None:
    table: Any = CaseRow.__table__
    session.execute(
        update(table).where(table.c.rerank_vector.is_not(None)).values(rerank_vector=None)
    )


_COPIES_QUERIES: dict[str, Any] = {}


def read_copies(engine: Engine, ids: Sequence[int]) -> Halves:
    """The float16 copies of these cases that have one."""
    out: Halves = {}
    if not ids:
        return out
    dialect = engine.dialect.name
    query = _COPIES_QUERIES.get(dialect)
    if query is None:
        # Core, compiled once (the id list is one parameter): this runs once per search and
        # must stay well under a millisecond.
        table: Any = CaseRow.__table__
        query = select(table.c.id, table.c.rerank_vector).where(
            in_id_list(table.c.id, dialect), table.c.rerank_vector.is_not(None)
        )
        _COPIES_QUERIES[dialect] = query
    with engine.connect() as conn:
        for case_id, blob in conn.execute(query, {"ids": id_list_value(ids, dialect)}):
            out[int(case_id)] = np.frombuffer(blob, RERANK_DTYPE)
    return out


def rerank(
    queries: Vectors, scores: Scores, ids: Ids, k: int, halves: Mapping[int, npt.NDArray[Any]]
) -> tuple[Scores, Ids]:
    """Re-score candidates with their finer vectors (the float16 copies) and keep the best k
    per query. A case without one (stored before 0007, or with `rerank` off) keeps its code
    score."""
    k = min(k, ids.shape[1])
    out_scores = np.full((len(ids), k), -np.inf, np.float32)
    out_ids = np.full((len(ids), k), -1, np.int64)
    for row, query in enumerate(queries):
        valid = ids[row] >= 0
        found, exact = ids[row][valid], scores[row][valid].astype(np.float32)
        have = [p for p, i in enumerate(found.tolist()) if i in halves]
        if have:
            stacked = np.stack([halves[int(found[p])] for p in have]).astype(np.float32)
            exact[have] = stacked @ query
        order = np.argsort(-exact, kind="stable")[:k]
        out_scores[row, : len(order)] = exact[order]
        out_ids[row, : len(order)] = found[order]
    return out_scores, out_ids
