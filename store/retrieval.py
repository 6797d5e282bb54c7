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
from memory_agent.store.index import A_VECTOR, Ids, as_vectors, check_vectors
from memory_agent.store.models import CaseRow
from memory_agent.store.records import Candidate, SearchHit
from memory_agent.store.room import Room
from memory_agent.store.rows import filter_clause, require_namespace
from memory_agent.store.validation import check_text


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
        cases = {c.id: c for c in self.memory.get_many([i for i, _ in found])}
        return [SearchHit(cases[i], score) for i, score in found if i in cases]

    def candidates(
        self,
        state: npt.ArrayLike,
        *,
        namespace: str | None = None,
        size: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Candidate]:
        """The shortlist for `state` as a policy sees it (best similarity first).

        `filters` (as in `nearest`) restricts it to the cases the caller can use, e.g.
        `{"outcome": "success"}` for a planner that is only ever shown successes: a policy
        must choose among the cases that will reach the planner, not fill its slots with
        ones that will be dropped. Reads only what a policy needs (reward, per-stage stats,
        the vector) in few small queries: this runs once per decision, so it must stay cheap.
        """
        n = size or self.settings.store.shortlist_size
        ns = self.namespace(namespace)
        scores, ids = self.nearest(state, n, namespace=ns, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if not found:
            return []
        wanted = [i for i, _ in found]
        with self.sessions() as session:
            live = select(CaseRow.id, CaseRow.reward).where(
                CaseRow.id.in_(wanted), CaseRow.deleted_at.is_(None)
            )
            rewards: dict[int, float | None] = {row[0]: row[1] for row in session.execute(live)}
            stats = self.case_stats.read(session, wanted)
        # Once a case is kept only as a code, its vector is the decoded code.
        vectors = self.space.vectors(wanted)
        return [
            Candidate(case_id=i, similarity=s, embedding=vectors[position], reward=rewards[i],
                      stats=dict(stats.get(i, {})), namespace=ns)
            for position, (i, s) in enumerate(found)
            if i in rewards
        ]  # fmt: skip
