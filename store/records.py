"""The typed values the store hands out and takes in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Outcome = Literal["success", "failure", "partial"]
OUTCOMES: tuple[str, ...] = ("success", "failure", "partial")


@dataclass(frozen=True, slots=True)
class StageStats:
    """Value statistics of one case at one decision stage."""

    visits: int
    q_value: float
    reward_sum: float
    last_reward: float | None


@dataclass(frozen=True, slots=True)
class Case:
    """A stored episodic case."""

    id: int
    namespace: str
    task: str
    plan: str | None
    trajectory: Any
    answer: str | None
    reward: float | None
    outcome: str | None
    source: str
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    stats: dict[str, StageStats] = field(default_factory=dict)
    codebook_version: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the export/import line format."""
        return {
            "id": self.id,
            "namespace": self.namespace,
            "task": self.task,
            "plan": self.plan,
            "trajectory": self.trajectory,
            "answer": self.answer,
            "reward": self.reward,
            "outcome": self.outcome,
            "source": self.source,
            "meta": self.meta,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "stats": {
                stage: {
                    "visits": s.visits,
                    "q_value": s.q_value,
                    "reward_sum": s.reward_sum,
                    "last_reward": s.last_reward,
                }
                for stage, s in self.stats.items()
            },
        }


@dataclass(slots=True)
class NewCase:
    """A case to add. Only `task` is required."""

    task: str
    plan: str | None = None
    trajectory: Any = None
    answer: str | None = None
    reward: float | None = None
    outcome: str | None = None
    source: str = "api"
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, StageStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A case found by search, with its cosine similarity to the query."""

    case: Case
    score: float


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    added: int = 0
    skipped_duplicates: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    evicted: int = 0


@dataclass(frozen=True, slots=True)
class Merge:
    """`dropped` cases were folded into `kept`."""

    kept: int
    dropped: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A case in the store's shortlist for one state: what a policy scores it by."""

    case_id: int
    similarity: float
    embedding: npt.NDArray[np.float32]
    reward: float | None
    stats: dict[str, StageStats] = field(default_factory=dict)
    namespace: str | None = None
    """The namespace the shortlist came from: learned policies keep their state per namespace
    (None: the policy's current one)."""
    text: CaseText | None = None
    """The case's task, plan and answer, when the shortlist was asked for them
    (`candidates(..., with_text=True)`): a caller that shows the chosen cases then needs no
    second read."""


@dataclass(frozen=True, slots=True)
class CaseText:
    """What a reader of a shown case needs of it: the task, how it was solved, the answer."""

    task: str
    plan: str | None
    answer: str | None


@dataclass(frozen=True, slots=True)
class RankedCase:
    """A case in a value summary: its learned value and visits at one stage."""

    case_id: int
    q_value: float
    visits: int
    task: str


@dataclass(frozen=True, slots=True)
class SavedState:
    """A policy's saved state (beyond per-case values), as the store keeps it."""

    key: str
    version: int
    format: int
    meta: dict[str, Any]
    payload: bytes
