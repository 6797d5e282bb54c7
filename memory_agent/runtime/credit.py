"""Per-case credit: the reward of an episode goes to the cases the planner used.

The runtime keeps each used case's per-stage statistics (visits, running-mean Q, reward sum,
last reward) in `case_stats` only for policies that learn nothing (similarity). Learned
policies (`value`, `neural`) write those rows in their own `update`, so the runtime leaves
them alone and nothing is counted twice; any policy can say so with `owns_case_stats`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from memory_agent.store import CaseMemory
from memory_agent.store.models import CaseRow, CaseStatRow, utcnow

_LEARNING_POLICIES = frozenset({"value", "neural"})


def policy_owns_stats(policy: object) -> bool:
    """Whether `policy.update` itself writes the per-case statistics."""
    default = getattr(policy, "name", None) in _LEARNING_POLICIES
    return bool(getattr(policy, "owns_case_stats", default))


def credit_cases(memory: CaseMemory, case_ids: Sequence[int], stage: str, reward: float) -> None:
    """Add one visit with `reward` to each case's `stage` statistics (Monte-Carlo mean)."""
    if not case_ids:
        return
    sessions = sessionmaker(memory.engine)
    now = utcnow()
    with sessions.begin() as session:
        live = set(
            session.scalars(
                select(CaseRow.id).where(CaseRow.id.in_(case_ids), CaseRow.deleted_at.is_(None))
            )
        )
        for case_id in sorted(live):
            row = session.get(CaseStatRow, (case_id, stage))
            if row is None:
                session.add(
                    CaseStatRow(case_id=case_id, stage=stage, visits=1, q_value=reward,
                                reward_sum=reward, last_reward=reward, updated_at=now)
                )  # fmt: skip
                continue
            row.visits += 1
            row.q_value += (reward - row.q_value) / row.visits
            row.reward_sum += reward
            row.last_reward = reward
            row.updated_at = now
