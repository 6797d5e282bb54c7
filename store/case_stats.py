"""`CaseStats`: the one owner of the `case_stats` table (per-case, per-stage values).

Every writer goes through here: cases added with statistics (import), merges, the learned
policies' feedback (`apply`), the runtime's Monte-Carlo credit for policies that learn
nothing (`credit`), and resets. Each update is one transaction: the feedback's case ids are
checked (live, same namespace) and all their rows are rewritten together, so a crash
mid-update leaves either the old values or the new ones, never half of them. On PostgreSQL
the rows are locked while read, so processes updating the same case at once do not lose each
other's visits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Subquery, delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.store.database import become_sqlite_writer
from memory_agent.store.models import CaseRow, CaseStatRow, utcnow
from memory_agent.store.records import RankedCase, StageStats
from memory_agent.store.validation import check_namespace, check_stage

StatsById = dict[int, dict[str, StageStats]]


def next_stats(
    old: StageStats | None,
    target: float,
    step_size: float | None,
    *,
    q_init: float = 0.0,
    prior_visits: float = 1.0,
) -> StageStats:
    """One value update towards `target`.

    The prior `q_init` counts as `prior_visits` pseudo-visits, so one unlucky episode (a
    harmful case shown beside a good one) cannot bury a case for good. The step is
    max(step_size, 1/(n + prior)): early visits average with the prior (Monte-Carlo), later
    ones move by a constant step (TD(0) with a step size; episodes are one step long, so
    the target is the credited reward), and a case that stops being useful is forgotten in
    about 1/step_size visits. With `step_size=None` it is the sample mean with the prior.
    """
    visits = (old.visits if old and old.visits > 0 else 0) + 1
    q = old.q_value if old and old.visits > 0 else q_init
    mean_step = 1.0 / (visits + prior_visits)
    step = mean_step if step_size is None else max(step_size, mean_step)
    return StageStats(
        visits=visits,
        q_value=q + step * (target - q),
        reward_sum=(old.reward_sum if old else 0.0) + target,
        last_reward=target,
    )


def combine(parts: Sequence[StageStats]) -> StageStats:
    """The statistics of merged cases at one stage: visits and reward sums add up, Q is the
    visit-weighted mean (the plain mean if none was visited), the last reward is the first
    known one."""
    visits = sum(p.visits for p in parts)
    q = (
        sum(p.q_value * p.visits for p in parts) / visits
        if visits
        else sum(p.q_value for p in parts) / len(parts)
    )
    last = next((p.last_reward for p in parts if p.last_reward is not None), None)
    return StageStats(visits, q, sum(p.reward_sum for p in parts), last)


def _row(case_id: int, stage: str, s: StageStats, now: datetime) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "stage": stage,
        "visits": s.visits,
        "q_value": s.q_value,
        "reward_sum": s.reward_sum,
        "last_reward": s.last_reward,
        "updated_at": now,
    }


class CaseStats:
    """Reads and writes the per-case, per-stage statistics."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ reading

    @staticmethod
    def read(session: Session, ids: Sequence[int]) -> StatsById:
        """The statistics of these cases, within the caller's session (a case without any
        has no entry)."""
        out: StatsById = defaultdict(dict)
        if not ids:
            return out
        for row in session.scalars(select(CaseStatRow).where(CaseStatRow.case_id.in_(ids))):
            out[row.case_id][row.stage] = StageStats(
                row.visits, row.q_value, row.reward_sum, row.last_reward
            )
        return out

    def get(self, ids: Sequence[int]) -> StatsById:
        """The statistics of these cases, one entry per id (empty for a case without any)."""
        with self._sessions() as session:
            found = self.read(session, ids)
        return {i: dict(found.get(i, {})) for i in ids}

    @staticmethod
    def learned_values() -> Subquery:
        """(case_id, q): each visited case's best learned value over its stages."""
        return (
            select(CaseStatRow.case_id, func.max(CaseStatRow.q_value).label("q"))
            .where(CaseStatRow.visits > 0)
            .group_by(CaseStatRow.case_id)
            .subquery()
        )

    def summary(self, namespace: str, top: int = 5) -> dict[str, Any]:
        """Per stage: how many cases have values, their spread, and the best and worst cases."""
        live = (CaseRow.namespace == namespace, CaseRow.deleted_at.is_(None))
        with self._sessions() as session:
            stages = list(
                session.execute(
                    select(
                        CaseStatRow.stage,
                        func.count(),
                        func.sum(CaseStatRow.visits),
                        func.avg(CaseStatRow.q_value),
                        func.min(CaseStatRow.q_value),
                        func.max(CaseStatRow.q_value),
                    )
                    .join(CaseRow, CaseRow.id == CaseStatRow.case_id)
                    .where(*live, CaseStatRow.visits > 0)
                    .group_by(CaseStatRow.stage)
                    .order_by(CaseStatRow.stage)
                )
            )
            out: dict[str, Any] = {}
            for stage, count, visits, mean, low, high in stages:
                columns = (CaseStatRow.case_id, CaseStatRow.q_value, CaseStatRow.visits)
                base = (
                    select(*columns, CaseRow.task)
                    .join(CaseRow, CaseRow.id == CaseStatRow.case_id)
                    .where(*live, CaseStatRow.stage == stage, CaseStatRow.visits > 0)
                )
                best = session.execute(
                    base.order_by(CaseStatRow.q_value.desc(), CaseStatRow.case_id).limit(top)
                )
                worst = session.execute(
                    base.order_by(CaseStatRow.q_value, CaseStatRow.case_id).limit(top)
                )
                out[stage] = {
                    "cases": int(count),
                    "visits": int(visits or 0),
                    "mean_q": float(mean or 0.0),
                    "min_q": float(low or 0.0),
                    "max_q": float(high or 0.0),
                    "top": [RankedCase(int(i), float(q), int(v), t) for i, q, v, t in best],
                    "bottom": [RankedCase(int(i), float(q), int(v), t) for i, q, v, t in worst],
                }
            return out

    def values(self, namespace: str) -> dict[str, list[float]]:
        """Per stage, the learned value of every live case of `namespace` visited there (for
        the distribution `policy stats` shows)."""
        live = (CaseRow.namespace == namespace, CaseRow.deleted_at.is_(None))
        out: dict[str, list[float]] = defaultdict(list)
        with self._sessions() as session:
            rows = session.execute(
                select(CaseStatRow.stage, CaseStatRow.q_value)
                .join(CaseRow, CaseRow.id == CaseStatRow.case_id)
                .where(*live, CaseStatRow.visits > 0)
            )
            for stage, q in rows:
                out[str(stage)].append(float(q))
        return dict(out)

    # ------------------------------------------------------------------ writing with a case

    @staticmethod
    def insert(session: Session, stats: Mapping[int, Mapping[str, StageStats]]) -> None:
        """Store the statistics new cases come with (an import), in the caller's session."""
        now = utcnow()
        rows = [
            _row(case_id, stage, s, now)
            for case_id, by_stage in stats.items()
            for stage, s in by_stage.items()
        ]
        if rows:
            session.execute(insert(CaseStatRow), rows)

    @staticmethod
    def replace(session: Session, case_id: int, stats: Mapping[str, StageStats]) -> None:
        """Replace every stage's statistics of one case (a merge), in the caller's session."""
        now = utcnow()
        session.execute(delete(CaseStatRow).where(CaseStatRow.case_id == case_id))
        for stage, s in stats.items():
            session.add(CaseStatRow(**_row(case_id, stage, s, now)))

    # ------------------------------------------------------------------ feedback

    @staticmethod
    def check_cases(session: Session, namespace: str, ids: Sequence[int]) -> None:
        """Every id is a live case of `namespace`, or nothing happens."""
        rows = dict(
            session.execute(
                select(CaseRow.id, CaseRow.namespace).where(
                    CaseRow.id.in_(list(ids)), CaseRow.deleted_at.is_(None)
                )
            ).all()
        )
        for case_id in ids:
            if case_id not in rows:
                raise CaseNotFoundError(
                    f"Feedback names case {case_id}, which is not a live case (unknown or "
                    "deleted); pass only ids from the shortlist the policy was given. "
                    "Nothing was updated."
                )
            if rows[case_id] != namespace:
                raise InvalidInputError(
                    f"Feedback for namespace {namespace!r} names case {case_id} of namespace "
                    f"{rows[case_id]!r}; a policy learns within one namespace. Nothing was "
                    "updated."
                )

    def apply(
        self,
        namespace: str,
        stage: str,
        targets: Mapping[int, float],
        step_size: float | None,
        *,
        q_init: float = 0.0,
        prior_visits: float = 1.0,
        check_only: Sequence[int] = (),
    ) -> dict[int, StageStats]:
        """Move each case's value at `stage` towards its target (`next_stats`), all in one
        transaction.

        `check_only` ids are validated with the others but not updated (shown cases that
        get no credit).
        """
        # Names first: the lock below keys on the stage (PostgreSQL refuses a NUL in it).
        namespace, stage = check_namespace(namespace), check_stage(stage)
        ids = sorted({*targets, *check_only})
        out: dict[int, StageStats] = {}
        with self._sessions.begin() as session:
            if targets:
                _lock_stats_for_update(session, stage, targets)
            self.check_cases(session, namespace, ids)
            if not targets:
                return out
            query = select(CaseStatRow).where(
                CaseStatRow.case_id.in_(list(targets)), CaseStatRow.stage == stage
            )
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                query = query.with_for_update()
            old = {
                row.case_id: StageStats(row.visits, row.q_value, row.reward_sum, row.last_reward)
                for row in session.scalars(query)
            }
            now = utcnow()
            changed: list[dict[str, Any]] = []
            fresh: list[dict[str, Any]] = []
            for case_id, target in targets.items():
                new = next_stats(
                    old.get(case_id), target, step_size, q_init=q_init, prior_visits=prior_visits
                )
                out[case_id] = new
                (changed if case_id in old else fresh).append(_row(case_id, stage, new, now))
            # One executemany each: building a statement per row cost more than the write.
            if changed:
                session.execute(update(CaseStatRow), changed)
            if fresh:
                session.execute(insert(CaseStatRow), fresh)
        return out

    def credit(self, case_ids: Sequence[int], stage: str, reward: float) -> None:
        """Add one visit with `reward` to each live case's `stage` statistics (Monte-Carlo
        mean): the runtime's credit for policies that keep no statistics of their own.
        Unknown or deleted ids are passed over."""
        if not case_ids:
            return
        stage = check_stage(stage)
        now = utcnow()
        with self._sessions.begin() as session:
            _lock_stats_for_update(session, stage, case_ids)
            live = set(
                session.scalars(
                    select(CaseRow.id).where(CaseRow.id.in_(case_ids), CaseRow.deleted_at.is_(None))
                )
            )
            for case_id in sorted(live):
                row = session.get(CaseStatRow, (case_id, stage))
                if row is None:
                    first = StageStats(1, reward, reward, reward)
                    session.add(CaseStatRow(**_row(case_id, stage, first, now)))
                    continue
                row.visits += 1
                row.q_value += (reward - row.q_value) / row.visits
                row.reward_sum += reward
                row.last_reward = reward
                row.updated_at = now

    def reset(self, namespace: str | None = None) -> int:
        """Forget every learned value (of one namespace, or all); returns rows removed."""
        with self._sessions.begin() as session:
            query = delete(CaseStatRow)
            if namespace is not None:
                query = query.where(
                    CaseStatRow.case_id.in_(
                        select(CaseRow.id).where(CaseRow.namespace == namespace)
                    )
                )
            result = session.execute(query)
            return int(getattr(result, "rowcount", 0) or 0)


def _lock_stats_for_update(session: Session, stage: str, case_ids: Iterable[int]) -> None:
    """Serialise read-modify-writes of these cases' statistics; call it as the transaction's
    first statement. `bench load` found two races: two processes giving a case its first
    feedback both inserted it (UNIQUE/primary-key violation), and two updates of one case read
    the same old row, so one visit was lost.
    PostgreSQL: a transaction-scoped advisory lock per (case, stage), in id order so two
    transactions cannot deadlock (SELECT ... FOR UPDATE locks only rows that exist).
    SQLite: the driver runs reads before the first write outside any transaction, so a write
    that changes nothing first makes this transaction the database's one writer before it
    reads (`become_sqlite_writer`)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        become_sqlite_writer(session)
        return
    for case_id in sorted(set(case_ids)):
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"case_stats:{stage}:{case_id}"},
        )
