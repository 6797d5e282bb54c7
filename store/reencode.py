"""The re-encode job: moves every live case to the pending codebook version, batch by batch
(each commits, so a killed job resumes where it stopped), and then makes that version active
in one UPDATE. store/upkeep.py runs it, in a thread or in the caller's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, or_, select, update

from memory_agent.store.code_storage import CodebookMoved, check_in_force, write_codes
from memory_agent.store.codebook import Codebook
from memory_agent.store.embedder import Vectors, normalise
from memory_agent.store.models import CaseRow, CodebookRow
from memory_agent.store.rerank import RERANK_DTYPE

if TYPE_CHECKING:
    from memory_agent.store.compression import Compression

ReEmbed = Callable[[list[str]], Vectors]
"""Embeds task texts with the store's own embedder (for re-encoding from the case text)."""


def remaining(keeper: Compression) -> int:
    """Live cases not yet re-encoded with the pending codebook."""
    if keeper.pending is None:
        return 0
    with keeper.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(CaseRow).where(*_todo(keeper.pending.version))
            )
            or 0
        )


def reencode_batch(keeper: Compression, re_embed: ReEmbed | None) -> int:
    """Re-encode the next batch of cases with the pending codebook; returns how many.

    The source is the raw vector where one is kept, else its float16 re-rank copy, else the
    case text re-embedded by the store's embedder, else (vectors supplied by the caller, no
    embedder known) the old code decoded. Each batch commits on its own.
    """
    target = keeper.pending
    if target is None:  # another thread reloaded: the job was finished elsewhere
        raise CodebookMoved("no pending codebook any more")
    with keeper.sessions() as session:
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
            .limit(keeper.settings.store.reindex_batch_size)
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
        elif code is not None and version is not None and (book := keeper.book(version)):
            vectors[position] = book.decode(np.frombuffer(code, np.uint8)[None, :])[0]
    if need_text:
        vectors[need_text] = re_embed([rows[p][1] for p in need_text]) if re_embed else 0.0
    codes = target.encode(normalise(vectors))
    expected = keeper.in_force()
    with keeper.sessions.begin() as session:
        write_codes(session, [r[0] for r in rows], codes, target.version, column="next_code")
        # Another process may have finished this job (or replaced the codebook) meanwhile.
        check_in_force(session, expected)
    return len(rows)


def activate_pending(keeper: Compression) -> bool:
    """Make the pending codebook active in the database: one UPDATE moves every live case
    over and retires the old version. Returns False (and changes nothing) when some live
    case still lacks the pending version's code; raises `CodebookMoved` when another process
    got there first."""
    target, old = keeper.pending, keeper.active
    if target is None:  # another thread reloaded: the job was finished elsewhere
        raise CodebookMoved("no pending codebook any more")
    expected = keeper.in_force()
    try:
        with keeper.sessions.begin() as session:
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
            check_in_force(session, expected)
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
                _set_status(session, old, "retired")
            _set_status(session, target, "active")
    except _NotDone:
        return False
    return True


class _NotDone(Exception):
    """Rolls back an `activate_pending` that found cases without the pending version's code."""


def _set_status(session: Any, book: Codebook, status: str) -> None:
    session.execute(
        update(CodebookRow)
        .where(CodebookRow.version == book.version)
        .values(status=status, usage=book.usage_bytes())
    )


def _todo(version: int) -> tuple[Any, ...]:
    return (
        CaseRow.deleted_at.is_(None),
        or_(CaseRow.next_codebook_version.is_(None), CaseRow.next_codebook_version != version),
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
