"""The case-selection contract shared by the runtime, the policies and the benchmarks.

A policy scores the store's shortlist of candidate cases for a state (the task embedding)
at a decision stage, selects K of them (optionally exploring), and learns from feedback that
says which shown cases the planner actually used and what reward the episode earned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from memory_agent.store import CaseMemory, StageStats

Vector = npt.NDArray[np.float32]
Stage = str
"""A decision stage: at least "plan" and "refine"."""
STAGES: tuple[Stage, ...] = ("plan", "refine")
Citation = Literal["cited", "inferred", "flat"]
REWARD_RANGE: tuple[float, float] = (-1.0, 1.0)
"""Rewards a policy accepts; scorers map their outcome into this range (failure 0, success 1)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A case in the store's shortlist for one state."""

    case_id: int
    similarity: float
    embedding: Vector
    reward: float | None
    stats: dict[str, StageStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Selection:
    """The cases a policy chose, best first, and which of them were exploration picks."""

    stage: Stage
    case_ids: list[int]
    scores: list[float]
    explored: list[bool]


@dataclass(frozen=True, slots=True)
class Feedback:
    """The outcome of one decision: what was shown, what was used, what it earned.

    `reward` must lie in REWARD_RANGE. With `citation="cited"` (or "inferred") only the
    `used` cases earn it and the other shown cases get the policy's unused target (0 by
    default); `citation="flat"` says the planner gave no citations, so every shown case
    gets the reward. Every id must be a live case of `namespace`.
    """

    namespace: str
    stage: Stage
    state: Vector
    shown: list[int]
    used: list[int]
    reward: float
    citation: Citation = "cited"


class CasePolicy(Protocol):
    """Score, select, learn. Implementations live beside this module."""

    name: str

    def score(self, state: Vector, candidates: Sequence[Candidate], stage: Stage) -> Vector:
        """One score per candidate; higher is better."""
        ...

    def select(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        k: int,
        stage: Stage,
        *,
        explore: bool = True,
    ) -> Selection: ...

    def update(self, feedback: Feedback) -> None: ...

    def save(self) -> None:
        """Persist any state not yet in the store (a no-op for policies that write through)."""
        ...


def shortlist(
    memory: CaseMemory,
    state: Vector,
    *,
    namespace: str | None = None,
    size: int | None = None,
    filters: Mapping[str, Any] | None = None,
) -> list[Candidate]:
    """The store's shortlist for `state` as policy candidates (best similarity first).

    `filters` (as in `CaseMemory.nearest`) restricts it to the cases the caller can use, e.g.
    `{"outcome": "success"}` for a planner that is only ever shown successes: a policy must
    choose among the cases that will reach the planner, not fill its slots with ones that
    will be dropped. Reads only what a policy needs (reward, per-stage stats, the vector) in
    few small queries: this runs once per decision, so it must stay cheap.
    """
    from sqlalchemy import select

    from memory_agent.store.models import CaseRow, CaseStatRow
    from memory_agent.store.records import StageStats

    n = size or memory.settings.shortlist_size
    scores, ids = memory.nearest(state, n, namespace=namespace, filters=filters)
    found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    if not found:
        return []
    wanted = [i for i, _ in found]
    stats: dict[int, dict[str, StageStats]] = {i: {} for i in wanted}
    with memory.engine.connect() as conn:
        live = select(CaseRow.id, CaseRow.reward).where(
            CaseRow.id.in_(wanted), CaseRow.deleted_at.is_(None)
        )
        rewards: dict[int, float | None] = {row[0]: row[1] for row in conn.execute(live)}
        for case_id, stage, visits, q, total, last in conn.execute(
            select(
                CaseStatRow.case_id, CaseStatRow.stage, CaseStatRow.visits,
                CaseStatRow.q_value, CaseStatRow.reward_sum, CaseStatRow.last_reward,
            ).where(CaseStatRow.case_id.in_(wanted))
        ):  # fmt: skip
            stats[case_id][stage] = StageStats(visits, q, total, last)
    # Through the store: once a case is kept only as a code, its vector is the decoded code.
    vectors = memory.vectors(wanted)
    return [
        Candidate(case_id=i, similarity=s, embedding=vectors[position], reward=rewards[i],
                  stats=stats[i])
        for position, (i, s) in enumerate(found)
        if i in rewards
    ]  # fmt: skip


def case_vectors(memory: CaseMemory, ids: Sequence[int]) -> Vector:
    """The stored vectors of these cases, one row per id in order (zeros if unknown)."""
    return memory.vectors(list(ids))
