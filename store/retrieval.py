"""`Retrieval`: nearest neighbours in a namespace's index, text search, and the shortlist a
policy chooses from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, select

from memory_agent.errors import InvalidInputError
from memory_agent.store.embedder import normalise
from memory_agent.store.index import Ids, check_vectors
from memory_agent.store.models import CaseRow
from memory_agent.store.records import Candidate, CaseText, SearchHit
from memory_agent.store.room import Room
from memory_agent.store.rows import filter_clause, require_namespace
from memory_agent.store.validation import check_text
from memory_agent.store.vector_space import VECTOR_COLUMNS


class Retrieval(Room):
    """Search over the vector space, with the database for filters and case rows."""

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
            n = np.asarray(vectors).reshape(-1, np.asarray(vectors).shape[-1]).shape[0]
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
            if self.space.dim is None:
                return []
            vector = self.space.embed([text])
        else:
            vector = np.asarray(query, dtype=np.float32)
        scores, ids = self.nearest(vector, k, namespace=ns, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        cases = {c.id: c for c in self.memory.get_many([i for i, _ in found])}
        return [SearchHit(cases[i], score) for i, score in found if i in cases]

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

        Reads only what a policy needs (reward, per-stage stats, the vector) in one
        read-only session of two queries: this runs once per decision, so it must stay
        cheap.
        """
        n = size or self.settings.store.shortlist_size
        ns = self.namespace(namespace)
        scores, ids = self.nearest(state, n, namespace=ns, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if not found:
            return []
        wanted = [i for i, _ in found]
        texts = (CaseRow.task, CaseRow.plan, CaseRow.answer) if with_text else ()
        with self.sessions() as session:
            query = select(CaseRow.id, CaseRow.reward, *VECTOR_COLUMNS, *texts).where(
                CaseRow.id.in_(wanted), CaseRow.deleted_at.is_(None)
            )
            rows = {row[0]: row[1:] for row in session.execute(query)}
            stats = self.case_stats.read(session, wanted)
        # Once a case is kept only as a code, its vector is the decoded code.
        width = len(VECTOR_COLUMNS)
        vectors = self.space.decode(wanted, {i: row[1 : 1 + width] for i, row in rows.items()})
        return [
            Candidate(case_id=i, similarity=s, embedding=vectors[position], reward=rows[i][0],
                      stats=dict(stats.get(i, {})), namespace=ns,
                      text=CaseText(*rows[i][1 + width :]) if with_text else None)
            for position, (i, s) in enumerate(found)
            if i in rows
        ]  # fmt: skip
