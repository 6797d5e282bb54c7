"""`Maintenance`: merging near-duplicates, and namespace budgets with eviction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Select, func, or_, select, update

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.store.case_stats import combine
from memory_agent.store.codebook import CodeIndex
from memory_agent.store.embedder import normalise
from memory_agent.store.models import CaseRow, utcnow
from memory_agent.store.records import Case, Merge, StageStats
from memory_agent.store.rerank import rerank
from memory_agent.store.room import Room
from memory_agent.store.rows import require_namespace

_QUERY_CHUNK = 1024  # cases searched at once by find_duplicates (bounds the candidates held)


class Maintenance(Room):
    """Merge, dedupe (union-find over index neighbours), budgets and eviction."""

    def merge(self, keep_id: int, drop_ids: Sequence[int], namespace: str | None = None) -> Merge:
        """Fold near-duplicate cases into `keep_id`, summing their statistics.

        Every case must be in `namespace` (default: the configured one); a case of another
        namespace is "not found", like a missing id.

        Per stage, visits and reward sums add up and Q becomes the visit-weighted mean; the
        kept case's reward becomes the mean of the known rewards. Dropped cases are
        tombstoned with `merged_into` pointing at the kept one.
        """
        ns = self.namespace(namespace)
        keep = self.memory.get(keep_id, namespace=ns)
        drop = [int(i) for i in dict.fromkeys(drop_ids) if int(i) != keep_id]
        if not drop:
            return Merge(keep_id, ())
        others = [c for c in self.memory.get_many(drop) if c.namespace == ns]
        if len(others) != len(drop):
            missing = sorted(set(drop) - {c.id for c in others})
            raise CaseNotFoundError(
                f"No live case with id {missing[0]} in namespace {ns!r} to merge; see "
                "`memory-agent memory list`."
            )
        group = [keep, *others]
        stats: dict[str, StageStats] = {}
        for stage in {s for c in group for s in c.stats}:
            stats[stage] = combine([c.stats[stage] for c in group if stage in c.stats])
        rewards = [c.reward for c in group if c.reward is not None]
        reward = sum(rewards) / len(rewards) if rewards else None
        meta = dict(keep.meta)
        meta["merged_from"] = sorted({*keep.meta.get("merged_from", []), *drop})
        now = utcnow()
        with self.lock:
            with self.sessions.begin() as session:
                session.execute(
                    update(CaseRow)
                    .where(CaseRow.id == keep_id)
                    .values(reward=reward, meta=meta, updated_at=now)
                )
                self.case_stats.replace(session, keep_id, stats)
            self.memory._writes.tombstone(drop, "merged", merged_into=keep_id, namespace=ns)
        return Merge(keep_id, tuple(drop))

    def find_duplicates(
        self, namespace: str | None = None, *, threshold: float = 0.95
    ) -> list[list[int]]:
        """Groups of live cases whose tasks are at least `threshold` cosine-similar.

        The cosine is that of the stored vectors: exact float32 before the switch to codes,
        the float16 re-rank copies after it, decoded codes once the copies are dropped.
        """
        ns = self.namespace(namespace)
        with self.sessions() as session:
            require_namespace(session, ns)
            live = list(
                session.scalars(
                    select(CaseRow.id).where(
                        CaseRow.namespace == ns,
                        CaseRow.deleted_at.is_(None),
                        or_(CaseRow.embedding.is_not(None), CaseRow.code.is_not(None)),
                    )
                )
            )
        if not live or self.space.dim is None:
            return []
        ids = np.asarray(live, dtype=np.int64)
        # The exact vectors, or float16 copies where codes are searched; decoded codes once
        # the store keeps codes alone (not unit length: normalised before any cosine).
        unit = normalise(self.space.vectors(live))
        parent = {int(i): int(i) for i in ids}

        def root(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        neighbours = min(len(ids), 32)
        self.space.sync(force=True)
        with self.lock:
            index = self.space.index_for(ns)
        # Over codes, the codes propose a wider set and the stored vectors (float16 copies
        # while the store keeps them) rank it, so each case's candidates are its nearest by
        # the same cosine that decides, not by a code's score.
        wide = neighbours
        if isinstance(index, CodeIndex):
            wide = min(len(ids), max(neighbours, self.settings.store.rerank_candidates))
        stored = {int(i): unit[p] for p, i in enumerate(ids)}
        position = {int(i): p for p, i in enumerate(ids)}
        for start in range(0, len(ids), _QUERY_CHUNK):
            queries = unit[start : start + _QUERY_CHUNK]
            with self.lock:
                scores, found = index.search(queries, wide)
            if wide > neighbours:
                _, found = rerank(queries, scores, found, neighbours, stored)
            for row, row_found in enumerate(found, start):
                row_id = int(ids[row])
                for other in row_found:
                    other_at = position.get(int(other))
                    if other_at is None or other == row_id:
                        continue
                    if float(unit[row] @ unit[other_at]) >= threshold:
                        parent[root(row_id)] = root(int(other))
        groups: dict[int, list[int]] = defaultdict(list)
        for case_id in parent:
            groups[root(case_id)].append(case_id)
        return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])

    def dedupe(self, namespace: str | None = None, *, threshold: float = 0.95) -> list[Merge]:
        """Merge each group of near-duplicates into its best case (reward, visits, age)."""
        merges = []
        ns = self.namespace(namespace)
        for group in self.find_duplicates(ns, threshold=threshold):
            cases = self.memory.get_many(group)

            def rank(case: Case) -> tuple[float, int, int]:
                visits = sum(s.visits for s in case.stats.values())
                return (case.reward if case.reward is not None else -2.0, visits, -case.id)

            best = max(cases, key=rank)
            merges.append(self.merge(best.id, [c.id for c in cases if c.id != best.id], ns))
        return merges

    def set_budget(self, namespace: str | None, max_cases: int | None) -> list[int]:
        """Set a namespace's case budget (None: the settings' default); evicts at once."""
        ns = self.namespace(namespace)
        if max_cases is not None and max_cases < 1:
            raise InvalidInputError("A budget must be at least 1 case (or None for no budget).")
        with self.sessions.begin() as session:
            require_namespace(session, ns).max_cases = max_cases
        return self.enforce_budget(ns)

    def budget(self, namespace: str | None = None) -> int | None:
        ns = self.namespace(namespace)
        with self.sessions() as session:
            row = require_namespace(session, ns)
            return (
                row.max_cases
                if row.max_cases is not None
                else self.settings.store.max_cases_per_namespace
            )

    def eviction_order(self, namespace: str) -> Select[int]:
        # The lowest value first: a case's learned value (its best stage, once the policy
        # has shown it), else its own reward, else 0; then the oldest.
        learned = self.case_stats.learned_values()
        return (
            select(CaseRow.id)
            .outerjoin(learned, learned.c.case_id == CaseRow.id)
            .where(CaseRow.namespace == namespace, CaseRow.deleted_at.is_(None))
            .order_by(
                func.coalesce(learned.c.q, CaseRow.reward, 0.0), CaseRow.created_at, CaseRow.id
            )
        )

    def enforce_budget(
        self, namespace: str | None = None, *, protect: Sequence[int] = ()
    ) -> list[int]:
        """Evict the lowest-value cases until the namespace fits its budget.

        Cases in `protect` (those just added) go last: a new case has had no chance to prove
        its value yet, so older cases are evicted before it.
        """
        ns = self.namespace(namespace)
        limit = self.budget(ns)
        if limit is None:
            return []
        excess = self.memory.count(ns) - limit
        if excess <= 0:
            return []
        protected = set(protect)
        with self.sessions() as session:
            ranked = list(session.scalars(self.eviction_order(ns)))
        victims = [i for i in ranked if i not in protected][:excess]
        victims += [i for i in ranked if i in protected][: excess - len(victims)]
        self.memory._writes.tombstone(victims, "evicted", namespace=ns)
        return victims
