"""`LearnedPolicy`: the abstract base of the policies that learn (`value`, `neural`).

What they share: their settings, credit and exploration modes, the per-task outcome history
(policies/context.py), the selection step, and the handling of feedback: check it, credit
the shown cases, move their values in the store's case statistics, then let the policy
learn from the credited targets (`learn_targets`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from memory_agent.policies.base import Candidate, Feedback, Selection, Stage, Vector
from memory_agent.policies.context import TaskContext
from memory_agent.policies.credit import CreditMode, check_feedback, credit_targets
from memory_agent.policies.exploration import Exploration
from memory_agent.policies.scoring import select_shown

if TYPE_CHECKING:
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory, StageStats


class LearnedPolicy(ABC):
    """A policy that keeps per-case values (in the store) and a per-task outcome history."""

    name: str
    context_key: str
    owns_case_stats = True
    """`update` writes the per-case statistics itself: the runtime must not credit again."""
    scale_ucb = False
    """Scale the UCB bonus by the spread of the scores (scores on no fixed scale)."""

    def __init__(
        self,
        memory: CaseMemory,
        settings: Settings | None = None,
        *,
        credit: CreditMode | None = None,
        exploration: Exploration | None = None,
        seed: int | None = None,
    ) -> None:
        self.memory = memory
        self.settings = settings or memory.settings
        self.credit: CreditMode = credit or self.settings.policy.credit
        self.exploration: Exploration = exploration or self.settings.policy.exploration
        self.context = TaskContext(memory, self.context_key, self.settings.policy.context_size)
        self.rng = np.random.default_rng(seed)
        self.start()

    def start(self) -> None:  # noqa: B027 (a hook: overriding it is optional)
        """What a policy sets up beyond the shared state (called at the end of `__init__`)."""

    @abstractmethod
    def score(self, state: Vector, candidates: Sequence[Candidate], stage: Stage) -> Vector:
        """One score per candidate; higher is better."""

    def select(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        k: int,
        stage: Stage,
        *,
        explore: bool = True,
    ) -> Selection:
        return select_shown(
            self.score(state, candidates, stage).astype(np.float64),
            state, candidates, k, stage,
            settings=self.settings, context=self.context,
            mode=self.exploration if explore else "none", rng=self.rng,
            scale_ucb=self.scale_ucb,
        )  # fmt: skip

    def update(self, feedback: Feedback) -> None:
        """Credit the shown cases, move their values, and learn from the outcome."""
        self.learn(feedback)

    def learn(self, feedback: Feedback) -> dict[int, StageStats]:
        """`update`, returning the new statistics of every case that was credited.

        The values move in one transaction, which also checks every shown id (live, of the
        feedback's namespace) before anything is written.
        """
        check_feedback(feedback, self.memory.dim)
        targets = credit_targets(feedback, self.credit, self.settings.policy.unused_target)
        stats = self.memory.case_stats.apply(
            feedback.namespace,
            feedback.stage,
            targets,
            self.settings.policy.step_size,
            q_init=self.settings.policy.q_init,
            prior_visits=self.settings.policy.prior_visits,
            check_only=[int(i) for i in feedback.shown],
        )
        self.learn_targets(feedback, targets)
        return stats

    def learn_targets(self, feedback: Feedback, targets: Mapping[int, float]) -> None:
        """After the values moved: remember the outcome for tasks like this one, and save
        the history every `policy_save_every` feedbacks."""
        self.context.add(feedback.stage, feedback.state, targets)
        if self.context.dirty >= self.settings.policy.save_every:
            self.save()

    def save(self) -> None:
        """Values are written on every update; the task context is saved here."""
        self.context.save()
