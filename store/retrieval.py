"""`Retrieval`: nearest neighbours in a namespace's index, text search, and the shortlist a
policy chooses from."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Executable, and_, bindparam, select

from memory_agent.errors import InvalidInputError
from memory_agent.store.database import id_list_value, in_id_list
from memory_agent.store.embedder import normalise
from memory_agent.store.index import A_VECTOR, Ids, as_vectors, check_vectors
from memory_agent.store.models import CaseRow, CaseStatRow
from memory_agent.store.records import Candidate, Case, CaseText, SearchHit, StageStats
from memory_agent.store.room import Room
from memory_agent.store.rows import CASE_COLUMNS, filter_clause, require_namespace, to_case
from memory_agent.store.validation import check_text
from memory_agent.store.vector_space import VECTOR_COLUMNS

if TYPE_CHECKING:
    from memory_agent.store.case_memory import CaseMemory


class Retrieval(Room):
    """Search over the vector space, with the database for filters and case rows."""

    def __init__(self, memory: CaseMemory) -> None:
        super().__init__(memory)
        self._queries: dict[tuple[str, bool], Executable] = {}

    def nearest(
        self,
        vectors: npt.ArrayLike,
        k: int,
        *,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """Raw top-k (scores, ids) for query vectors; ids are -1 where fewer than k exist."""
        ns = self.namespace(namespace)
        self.space.sync()
        allowed = None
        if filters or ns not in self.space.indexes:
            # A namespace with an index exists (namespaces are never dropped): no round trip.
            with self.sessions() as session:
                require_namespace(session, ns)
        if filters:
            with self.sessions() as session:
                allowed = np.fromiter(
                    session.scalars(
                        select(CaseRow.id).where(
                            CaseRow.namespace == ns,
                            CaseRow.deleted_at.is_(None),
                            and_(*filter_clause(filters)),
                        )
                    ),
                    dtype=np.int64,
                )
        if self.space.dim is None:
            array = as_vectors(vectors, "query vectors")
            n = array.reshape(-1, array.shape[-1]).shape[0]
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        queries = normalise(check_vectors(vectors, self.space.dim, "query vectors"))
        with self.lock:
            scores, ids = self.space.search(ns, queries, k, allowed)
        return scores, ids

    def search(
        self,
        query: str | npt.ArrayLike,
        k: int = 5,
        *,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """Cases whose task is most similar to `query` (text or vector), best first."""
        if k < 1:
            raise InvalidInputError(f"k must be at least 1; got {k}.")
        ns = self.namespace(namespace)
        if ns not in self.space.indexes:
            # A namespace with an index exists (namespaces are never dropped): no round trip.
            with self.sessions() as session:
                require_namespace(session, ns)
        if isinstance(query, str):
            text = check_text(
                query, "query", self.settings.store.max_task_chars, required=True,
                setting="MEMORY_AGENT_MAX_TASK_CHARS",
            )  # fmt: skip
            assert text is not None
            if self.space.known_dim() is None:
                return []
            vector = self.space.embed([text])
        else:
            vector = as_vectors(query, "query", f"text (a string) or {A_VECTOR}")
        scores, ids = self.nearest(vector, k, namespace=ns, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        cases = {c.id: c for c in self.cases([i for i, _ in found])}
        return [SearchHit(cases[i], score) for i, score in found if i in cases]

    def cases(self, ids: Sequence[int], namespace: str | None = None) -> list[Case]:
        """Live cases for these ids in the order given (unknown ids left out); with
        `namespace` (already resolved), only that namespace's.

        Two statements compiled once on one connection, without the vector columns: the ORM
        read of the same rows (a session, every column, the ids rendered into the statement)
        was 1.5-2 ms of a 2 ms `search()` whose index part takes 0.1 ms."""
        if not ids:
            return []
        params: dict[str, Any] = {"ids": id_list_value(ids, self.engine.dialect.name)}
        if namespace is not None:
            params["namespace"] = namespace
        with self.engine.connect() as conn:
            query = self._cases_query(namespace is not None)
            rows = {row.id: row for row in conn.execute(query, params)}
            stats = self._read_stats(conn, params)
        return [to_case(rows[i], stats.get(i)) for i in ids if i in rows]

    def _read_stats(
        self, conn: Connection, params: Mapping[str, Any]
    ) -> dict[int, dict[str, StageStats]]:
        """Per case id of `params["ids"]`, its statistics per stage."""
        stats: dict[int, dict[str, StageStats]] = defaultdict(dict)
        for case_id, stage, *values in conn.execute(self._stats_query(), params):
            stats[case_id][stage] = StageStats(*values)
        return stats

    def candidates(
        self,
        state: npt.ArrayLike,
        *,
        namespace: str | None = None,
        size: int | None = None,
        filters: Mapping[str, Any] | None = None,
        with_text: bool = False,
    ) -> list[Candidate]:
        """The shortlist for `state` as a policy sees it (best similarity first).

        `filters` (as in `nearest`) restricts it to the cases the caller can use, e.g.
        `{"outcome": "success"}` for a planner that is only ever shown successes: a policy
        must choose among the cases that will reach the planner, not fill its slots with
        ones that will be dropped. `with_text`: each candidate also carries its task, plan
        and answer (`Candidate.text`), for a caller that shows the chosen ones.

        Reads only what a policy needs (reward, per-stage stats, the vector; the text if
        asked) in two queries on one connection: this runs once per decision, so it must
        stay cheap.
        """
        n = size or self.settings.store.shortlist_size
        ns = self.namespace(namespace)
        scores, ids = self.nearest(state, n, namespace=ns, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if not found:
            return []
        wanted = [i for i, _ in found]
        dialect = self.engine.dialect.name
        params = {"ids": id_list_value(wanted, dialect)}
        # Core statements compiled once per store (the id list is one parameter): an ORM read
        # of the same rows, with the ids rendered into each statement, cost several times the
        # queries themselves.
        with self.engine.connect() as conn:
            shortlist = conn.execute(self._shortlist_query(with_text), params)
            rows = {row[0]: row[1:] for row in shortlist}
            stats = self._read_stats(conn, params)
        # Once a case is kept only as a code, its vector is the decoded code.
        width = len(VECTOR_COLUMNS)
        vectors = self.space.decode(wanted, {i: row[1 : 1 + width] for i, row in rows.items()})
        return [
            Candidate(case_id=i, similarity=s, embedding=vectors[position], reward=rows[i][0],
                      stats=stats.get(i, {}), namespace=ns,
                      text=CaseText(*rows[i][1 + width :]) if with_text else None)
            for position, (i, s) in enumerate(found)
            if i in rows
        ]  # fmt: skip

    def _shortlist_query(self, with_text: bool) -> Executable:
        """A shortlist's rows: id, reward, `VECTOR_COLUMNS`, and with_text task, plan, answer."""
        key = ("shortlist", with_text)
        if key not in self._queries:
            texts = (CaseRow.task, CaseRow.plan, CaseRow.answer) if with_text else ()
            self._queries[key] = select(CaseRow.id, CaseRow.reward, *VECTOR_COLUMNS, *texts).where(
                in_id_list(CaseRow.id, self.engine.dialect.name), CaseRow.deleted_at.is_(None)
            )
        return self._queries[key]

    def _cases_query(self, in_namespace: bool) -> Executable:
        """Live case rows by id (`CASE_COLUMNS`), in_namespace: of the `namespace` parameter."""
        key = ("cases", in_namespace)
        if key not in self._queries:
            where = [in_id_list(CaseRow.id, self.engine.dialect.name), CaseRow.deleted_at.is_(None)]
            if in_namespace:
                where.append(CaseRow.namespace == bindparam("namespace"))
            self._queries[key] = select(*CASE_COLUMNS).where(*where)
        return self._queries[key]

    def _stats_query(self) -> Executable:
        """The shortlist's statistics: case id, stage, and `StageStats`' fields in order."""
        key = ("stats", False)
        if key not in self._queries:
            self._queries[key] = select(
                CaseStatRow.case_id, CaseStatRow.stage, CaseStatRow.visits,
                CaseStatRow.q_value, CaseStatRow.reward_sum, CaseStatRow.last_reward,
            ).where(in_id_list(CaseStatRow.case_id, self.engine.dialect.name))  # fmt: skip
        return self._queries[key]
