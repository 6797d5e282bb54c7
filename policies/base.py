"""The case-selection contract shared by the runtime, the policies and the benchmarks.

A policy scores the store's shortlist of candidate cases for a state (the task embedding)
at a decision stage, selects K of them (optionally exploring), and learns from feedback that
says which shown cases the planner actually used and what reward the episode earned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

# The store makes the shortlist, so it owns the record; policies take it from here.
from memory_agent.store.records import Candidate

if TYPE_CHECKING:
    pass

__all__ = [
    "REWARD_RANGE",
    "STAGES",
    "Candidate",
    "CasePolicy",
    "Citation",
    "Considered",
    "Feedback",
    "Selection",
    "Stage",
    "Vector",
]

Vector = npt.NDArray[np.float32]
Stage = str
"""A decision stage: at least "plan" and "refine"."""
STAGES: tuple[Stage, ...] = ("plan", "refine")
Citation = Literal["cited", "inferred", "flat"]
REWARD_RANGE: tuple[float, float] = (-1.0, 1.0)
"""Rewards a policy accepts; scorers map their outcome into this range (failure 0, success 1)."""


@dataclass(frozen=True, slots=True)
class Considered:
    """Why a candidate was or was not shown: what the policy saw of it and made of it."""

    case_id: int
    similarity: float
    value: float | None
    """The learned value for this task (None: the policy learns none)."""
    evidence: float | None
    """How many outcomes on tasks like this one the value rests on (0: the prior alone)."""
    score: float
    shown: bool
    explored: bool
    """Shown as an exploration pick: the greedy ranking would not have shown it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "similarity": round(self.similarity, 4),
            "value": None if self.value is None else round(self.value, 4),
            "evidence": None if self.evidence is None else round(self.evidence, 2),
            "score": round(self.score, 4),
            "shown": self.shown,
            "explored": self.explored,
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """The cases a policy chose, best first, and which of them were exploration picks.

    `considered` explains the choice: every candidate the policy scored, in shortlist order.
    """

    stage: Stage
    case_ids: list[int]
    scores: list[float]
    explored: list[bool]
    considered: tuple[Considered, ...] = ()


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
    owns_case_stats: bool
    """True if `update` writes the per-case statistics itself (learned policies); False if
    the runtime must credit the cases used (`CaseMemory.case_stats.credit`)."""

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
