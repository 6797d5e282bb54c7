"""A write whose COMMIT reached the database but whose connection broke before the reply came
back: the caller gets an error, yet the case is stored. The writing process's own index must
end up holding exactly what was committed (it used to skip its own change-log entries when
syncing, so such a case stayed unsearchable in that process for good), on SQLite and on
PostgreSQL.

The failure is injected at the edge: the dialect's COMMIT runs for real, then (on PostgreSQL)
the server backend of that connection is terminated from another connection and the driver's
"server closed the connection" error is raised, as when the reply is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hash_embedder import HashEmbedder
from sqlalchemy import select

from memory_agent.errors import StoreConnectionError
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory
from memory_agent.store.models import CaseRow


class CommitFault:
    """Breaks the next COMMIT of `memory`'s engine: `after=True` commits first (the ambiguous
    case), `after=False` fails before anything is committed."""

    def __init__(self, memory: CaseMemory) -> None:
        self.memory = memory
        self.dialect: Any = memory.engine.dialect
        self.real = self.dialect.do_commit
        self.armed: bool | None = None
        self.dialect.do_commit = self._commit

    def arm(self, *, after: bool) -> None:
        self.armed = after

    def _commit(self, dbapi_connection: Any) -> None:
        after, self.armed = self.armed, None
        if after is None:
            self.real(dbapi_connection)
            return
        if after:
            self.real(dbapi_connection)
        if self.dialect.name != "postgresql":
            import sqlite3

            raise sqlite3.OperationalError("disk I/O error")
        # SQLAlchemy hands over its pool's proxy; the psycopg connection is inside.
        driver = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
        self._terminate(driver.info.backend_pid)
        # The driver's own error on the dead connection: for a COMMIT not sent yet, the COMMIT
        # itself fails; after one that went through, the reply is what got lost.
        if after:
            driver.execute("SELECT 1")
        else:
            self.real(dbapi_connection)
        raise AssertionError("the connection should be broken")

    def _terminate(self, pid: int) -> None:
        """End the server process of one connection, from another, and wait until it is gone."""
        import psycopg

        url = self.memory.engine.url.set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the backend did not end"
                time.sleep(0.01)


def _committed_live_ids(url: str, namespace: str) -> set[int]:
    """What the database holds, read by a connection of its own."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = select(CaseRow.id).where(
                CaseRow.namespace == namespace, CaseRow.deleted_at.is_(None)
            )
            return {int(i) for i in conn.scalars(query)}
    finally:
        engine.dispose()


def _indexed_ids(memory: CaseMemory, namespace: str) -> set[int]:
    """Every id the process's own index would return in `namespace`."""
    probe = np.ones(HashEmbedder().dim, dtype=np.float32)
    _scores, ids = memory.nearest(probe, 1000, namespace=namespace)
    return {int(i) for i in ids[0] if i >= 0}


@pytest.fixture
def store(database_url: str, isolated_home: Path) -> Iterator[CaseMemory]:
    memory = CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(),  # type: ignore[arg-type]
                        database_url=database_url)  # fmt: skip
    yield memory
    memory.close()


def _broken_commit_error(database_url: str) -> type[BaseException]:
    if database_url.startswith("postgresql"):
        return StoreConnectionError  # the store's own error: "a write may have been stored"
    from sqlalchemy.exc import OperationalError

    return OperationalError


def test_an_add_whose_commit_succeeds_as_the_connection_breaks_is_indexed_after_sync(
    store: CaseMemory, database_url: str
) -> None:
    kept = store.add("a case stored before the fault")
    fault = CommitFault(store)
    fault.arm(after=True)
    with pytest.raises(_broken_commit_error(database_url)):
        store.add("a case committed while the connection broke")
    committed = _committed_live_ids(database_url, "default")
    assert len(committed) == 2 and kept.id in committed  # the server did store it
    store.sync(force=True)
    assert _indexed_ids(store, "default") == committed
    # And it is found like any other case, by its own text.
    (ambiguous,) = committed - {kept.id}
    hits = store.search("a case committed while the connection broke", 1)
    assert [h.case.id for h in hits] == [ambiguous]
    # A commit that failed before reaching the database: nothing stored, nothing indexed.
    fault.arm(after=False)
    with pytest.raises(_broken_commit_error(database_url)):
        store.add("a case whose commit never reached the database")
    assert _committed_live_ids(database_url, "default") == committed
    store.sync(force=True)
    assert _indexed_ids(store, "default") == committed
    # The store carries on: the next write is indexed as usual.
    after = store.add("a case stored after the faults")
    assert _indexed_ids(store, "default") == committed | {after.id}


def test_a_delete_whose_commit_succeeds_as_the_connection_breaks_leaves_the_index(
    store: CaseMemory, database_url: str
) -> None:
    first = store.add("the case that will be deleted")
    second = store.add("the case that stays")
    fault = CommitFault(store)
    fault.arm(after=True)
    with pytest.raises(_broken_commit_error(database_url)):
        store.delete(first.id)
    assert _committed_live_ids(database_url, "default") == {second.id}
    # A search syncs on its own (no forced sync): the next one already leaves the case out.
    hits = store.search("the case that will be deleted", 5)
    assert [h.case.id for h in hits] == [second.id]
    assert _indexed_ids(store, "default") == {second.id}
