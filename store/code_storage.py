"""How codes and codebooks are stored: codebook versions as rows, a transaction that stores a
new version, a batch of codes into the case rows, and the check that the versions a process
encoded with are still the ones in force when it commits.

Several processes may write one store. Every transaction that writes codes or changes which
codebooks are in force ends by checking, under the vector-write lock, that the versions in
the database are the ones it worked with (`check_in_force`); if another process moved them
meanwhile it raises `CodebookMoved` and nothing is committed. So a code of a retired version
is never stored, and no case misses a pending version's code. The same check covers the
float16 re-rank copies: once another process dropped them (store/rerank.py), a write that
carries copies is rolled back and made again without.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.store.codebook import Codebook, Codes
from memory_agent.store.embedder import Vectors
from memory_agent.store.index_sync import lock_vector_writes
from memory_agent.store.models import CaseRow, CodebookRow, utcnow
from memory_agent.store.rerank import copies_dropped, rerank_bytes

InForce = tuple[int | None, int | None, bool]
"""(active codebook version, pending codebook version, whether the store dropped its float16
re-rank copies); None where there is no such version."""


class CodebookMoved(Exception):
    """Another process changed which codebooks are in force since this one loaded them: the
    transaction that found out was rolled back; reload the codebooks and try again."""


def moved(session: Session, expected: InForce) -> bool:
    """Whether the active and pending versions in the database, as this session sees them,
    or whether the store dropped its re-rank copies, differ from `expected`."""
    rows = session.execute(
        select(CodebookRow.status, CodebookRow.version).where(
            CodebookRow.status.in_(("active", "pending"))
        )
    ).all()
    found = {status: sorted(v for s, v in rows if s == status) for status in ("active", "pending")}
    active, pending, dropped = expected
    want = {
        status: [] if v is None else [v]
        for status, v in zip(("active", "pending"), (active, pending), strict=True)
    }
    return found != want or copies_dropped(session) != dropped


def check_in_force(session: Session, expected: InForce) -> None:
    """Raise `CodebookMoved` unless the database's active and pending versions (and the
    copies' state), as this transaction sees them, are `expected`. Call it after the
    transaction's own writes: it takes the vector-write lock, so no other such transaction
    commits in between."""
    lock_vector_writes(session)
    if moved(session, expected):
        raise CodebookMoved(f"the codebooks in force are no longer {expected}")


def next_version(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.max(CodebookRow.version))) or 0) + 1


@contextmanager
def storing(
    sessions: sessionmaker[Session], book: Codebook, status: str, reason: str
) -> Iterator[Session]:
    """A transaction that stores a new codebook version; more writes go in its body.
    Another process storing the same version number first is `CodebookMoved`."""
    try:
        with sessions.begin() as session:
            session.add(row_from_book(book, status, reason))
            session.flush()
            yield session
    except IntegrityError as exc:
        raise CodebookMoved(str(exc)) from exc


def write_codes(
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


def book_from_row(row: CodebookRow) -> Codebook:
    return Codebook.from_bytes(
        row.blob,
        version=row.version,
        usage=row.usage,
        distortion=row.distortion,
        trained_on=row.trained_on,
    )


def row_from_book(book: Codebook, status: str, reason: str) -> CodebookRow:
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
