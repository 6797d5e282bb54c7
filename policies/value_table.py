"""Per-case, per-stage value statistics in the store's `case_stats` table.

Every update is one transaction: the feedback's case ids are checked (live, same namespace)
and all their rows are rewritten together, so a crash mid-update leaves either the old
values or the new ones, never half of them. On PostgreSQL the rows are locked while read, so
processes updating the same case at once do not lose each other's visits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.store.records import StageStats

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from memory_agent.store import CaseMemory


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


@dataclass(frozen=True, slots=True)
class RankedCase:
    case_id: int
    q_value: float
    visits: int
    task: str


class ValueTable:
    """Reads and writes learned values through the store's database."""

    def __init__(self, memory: CaseMemory) -> None:
        from sqlalchemy.orm import sessionmaker

        self.memory = memory
        self._sessions = sessionmaker(memory.engine, expire_on_commit=False)

    def check_cases(self, session: Session, namespace: str, ids: Sequence[int]) -> None:
        """Every id is a live case of `namespace`, or nothing happens."""
        from sqlalchemy import select

        from memory_agent.store.models import CaseRow

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
        """Move each case's value at `stage` towards its target, all in one transaction.

        `check_only` ids are validated with the others but not updated (shown cases that
        get no credit).
        """
        from sqlalchemy import insert, select, update

        from memory_agent.store.models import CaseStatRow, utcnow

        ids = sorted({*targets, *check_only})
        out: dict[int, StageStats] = {}
        with self._sessions.begin() as session:
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
                row = {
                    "case_id": case_id,
                    "stage": stage,
                    "visits": new.visits,
                    "q_value": new.q_value,
                    "reward_sum": new.reward_sum,
                    "last_reward": new.last_reward,
                    "updated_at": now,
                }
                (changed if case_id in old else fresh).append(row)
            # One executemany each: building a statement per row cost more than the write.
            if changed:
                session.execute(update(CaseStatRow), changed)
            if fresh:
                session.execute(insert(CaseStatRow), fresh)
        return out

    def reset(self, namespace: str | None = None) -> int:
        """Forget every learned value (of one namespace, or all); returns rows removed."""
        from sqlalchemy import delete, select

        from memory_agent.store.models import CaseRow, CaseStatRow

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

    def summary(self, namespace: str, top: int = 5) -> dict[str, Any]:
        """Per stage: how many cases have values, their spread, and the best and worst cases."""
        from sqlalchemy import func, select

        from memory_agent.store.models import CaseRow, CaseStatRow

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
