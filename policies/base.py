"""The case-selection contract shared by the runtime, the policies and the benchmarks.

A policy scores the store's shortlist of candidate cases for a state (the task embedding)
at a decision stage, selects K of them (optionally exploring), and learns from feedback that
says which shown cases the planner actually used and what reward the episode earned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from memory_agent.store import CaseMemory, StageStats

Vector = npt.NDArray[np.float32]
Stage = str
"""A decision stage: at least "plan" and "refine"."""
STAGES: tuple[Stage, ...] = ("plan", "refine")
Citation = Literal["cited", "inferred", "flat"]


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
    """The outcome of one decision: what was shown, what was used, what it earned."""

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


def shortlist(
    memory: CaseMemory, state: Vector, *, namespace: str | None = None, size: int | None = None
) -> list[Candidate]:
    """The store's shortlist for `state` as policy candidates (best similarity first)."""
    n = size or memory.settings.shortlist_size
    scores, ids = memory.nearest(state, n, namespace=namespace)
    found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    if not found:
        return []
    cases = {c.id: c for c in memory.get_many([i for i, _ in found])}
    vectors = memory.vectors([i for i, _ in found])
    return [
        Candidate(case_id=i, similarity=s, embedding=vectors[pos], reward=cases[i].reward,
                  stats=cases[i].stats)
        for pos, (i, s) in enumerate(found)
        if i in cases
    ]  # fmt: skip
