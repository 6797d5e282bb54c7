"""`LearnedPolicy`: the abstract base of the policies that learn (`value`, `neural`).

What they share: their settings, credit and exploration modes, the per-task outcome history
(policies/context.py), the selection step, and the handling of feedback: check it, credit
the shown cases, move their values in the store's case statistics, then let the policy
learn from the credited targets (`learn_targets`).

Namespaces are tenants: everything a policy learns beyond the per-case values (the task
context here, the network in `neural`) is kept and saved per namespace, so one tenant's
feedback never moves another's scores. The namespace in force is the one of the candidates
being scored (`Candidate.namespace`) or of the feedback being learned from; each namespace's
state is loaded from the store the first time the policy serves it, under the keys
`<key>@<namespace>` (`tenant_key`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from memory_agent.policies.base import Candidate, Feedback, Selection, Stage, Vector
from memory_agent.policies.context import TaskContext
from memory_agent.policies.credit import (
    CreditMode,
    check_feedback,
    credit_targets,
    failed_episode,
)
from memory_agent.policies.exploration import Exploration
from memory_agent.policies.metric import TaskMetric
from memory_agent.policies.scoring import drift_rules_hold, select_shown
from memory_agent.store.policy_state import tenant_key

Values = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""Per candidate: its value for the task and the evidence (outcomes) it rests on."""

if TYPE_CHECKING:
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory, StageStats


class LearnedPolicy(ABC):
    """A policy that keeps per-case values (in the store) and a per-task outcome history."""

    name: str
    context_key: str
    tenant_fields: tuple[str, ...] = ("context",)
    """The attributes that hold one namespace's learned state; `use_namespace` swaps them."""
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
        self.rng = np.random.default_rng(seed)
        self.namespace = self.settings.namespace
        """The namespace whose learned state is in force (see `use_namespace`)."""
        self._tenants: dict[str, dict[str, Any]] = {}
        self.context = self.new_context(self.namespace)
        self.start()

    def start(self) -> None:  # noqa: B027 (a hook: overriding it is optional)
        """What a policy sets up beyond the shared state, for the namespace in force (called
        at the end of `__init__` and when the policy first serves another namespace)."""

    def new_context(self, namespace: str) -> TaskContext:
        size = self.settings.policy.context_size
        key = tenant_key(self.context_key, namespace)
        context = TaskContext(self.memory, key, size, self.new_metric())
        if namespace == "default" and not context.history and not context.episodes:
            # Saved before contexts were kept per namespace (one for all): the default
            # namespace, where single-tenant stores keep their cases, carries it on.
            legacy = TaskContext(self.memory, self.context_key, size, self.new_metric())
            if legacy.history or legacy.episodes:
                legacy.key = context.key
                return legacy
        return context

    def new_metric(self) -> TaskMetric | None:
        """The learned task metric of a new context (`policy.context_metric`), or None."""
        policy = self.settings.policy
        if policy.context_metric != "learned":
            return None
        return TaskMetric(rank=policy.context_metric_rank, gain=policy.context_metric_gain)

    def use_namespace(self, namespace: str) -> None:
        """Put `namespace`'s learned state in force (loaded from the store on first use)."""
        if namespace == self.namespace:
            return
        self._tenants[self.namespace] = {f: getattr(self, f) for f in self.tenant_fields}
        self.namespace = namespace
        stashed = self._tenants.pop(namespace, None)
        if stashed is not None:
            for name, value in stashed.items():
                setattr(self, name, value)
            return
        self.context = self.new_context(namespace)
        self.start()

    def use_namespace_of(self, candidates: Sequence[Candidate]) -> None:
        namespace = next((c.namespace for c in candidates if c.namespace is not None), None)
        if namespace is not None:
            self.use_namespace(namespace)

    def score(self, state: Vector, candidates: Sequence[Candidate], stage: Stage) -> Vector:
        """One score per candidate (higher is better), with the learned state of the
        candidates' namespace in force."""
        self.use_namespace_of(candidates)
        return self.evaluate(state, candidates, stage)[0]

    def score_candidates(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage
    ) -> Vector:
        """`score` for a policy whose namespace state is already in force."""
        return self.evaluate(state, candidates, stage)[0]

    @abstractmethod
    def evaluate(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage
    ) -> tuple[Vector, Values]:
        """Scores and the task-conditioned (value, evidence) they came from, per candidate,
        for a policy whose namespace state is already in force."""

    def select(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        k: int,
        stage: Stage,
        *,
        explore: bool = True,
    ) -> Selection:
        self.use_namespace_of(candidates)
        scores, values = self.evaluate(state, candidates, stage)
        return select_shown(
            scores.astype(np.float64),
            state, candidates, k, stage,
            settings=self.settings, context=self.context,
            mode=self.exploration if explore else "none", rng=self.rng,
            scale_ucb=self.scale_ucb, values=values,
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
        self.use_namespace(feedback.namespace)
        targets = credit_targets(
            feedback, self.credit, self.settings.policy.unused_target,
            spare_when_failed=self.spared_when_failed(feedback),
        )  # fmt: skip
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

    def spared_when_failed(self, feedback: Feedback) -> list[int]:
        """The shown cases a failed episode leaves unchanged if the planner did not use them
        (`policy.failed_unused`): none, those with no outcome yet on tasks like this one
        (untried), or all. With `policy.drift_scope=on_drop`, only where outcomes on tasks
        like this one dropped (this failure counted)."""
        mode = self.settings.policy.failed_unused
        if mode == "zero":
            return []
        if not failed_episode(float(feedback.reward), self.settings.policy.unused_target):
            return []  # not a failure: nothing is spared (and no drop test is paid for)
        if not drift_rules_hold(
            feedback.state, feedback.stage, self.settings, self.context, latest=feedback.reward
        ):
            return []
        shown = [int(i) for i in feedback.shown]
        if mode == "spare":
            return shown
        # Untried here: no outcome on tasks like this one (an outcome on another kind of
        # task says nothing of how the case does on this one).
        threshold = self.settings.policy.context_cos
        return [
            i for i in shown
            if self.context.evidence(feedback.state, feedback.stage, i, threshold) <= 0.0
        ]  # fmt: skip

    def learn_targets(self, feedback: Feedback, targets: Mapping[int, float]) -> None:
        """After the values moved: remember the outcome for tasks like this one, and save
        the history every `policy_save_every` feedbacks."""
        self.context.add(feedback.stage, feedback.state, targets, feedback.reward)
        policy = self.settings.policy
        if policy.drift_history == "since_onset" and failed_episode(
            float(feedback.reward), policy.unused_target
        ):
            # A drop stays noted, so values from before it stay set aside after a success.
            self.context.note_drop(feedback.state, feedback.stage, policy.context_cos)
        if self.context.dirty >= self.settings.policy.save_every:
            self.save_namespace()

    def save(self) -> None:
        """Save the learned state of every namespace this policy has served."""
        current = self.namespace
        for namespace in [current, *sorted(self._tenants)]:
            self.use_namespace(namespace)
            self.save_namespace()
        self.use_namespace(current)

    def save_namespace(self) -> None:
        """Values are written on every update; the namespace's task context is saved here."""
        self.context.save()
