"""An upper bound for case-selection learners on the policy benchmark's stream.

`FamilyBound` is NOT a product policy and must never become one: it is told hidden labels a
real policy never sees, the family of every task (and, in the `bound` variant, of every
case), which `run_policy` passes to it from the simulated stream (evals/policy_stream.py)
beside the shortlist. It exists only to measure how much of the oracle a learner could
reach on this stream if it could tell families apart perfectly, so that a gap between a real
policy (`value`) and the oracle can be split into "the family signal" and "everything else".
It does not implement `CasePolicy` on purpose: its `select` and `update` need the labels.

What it still has to learn, from the same cited feedback as the real learners (target: the
episode's reward for a case the planner used, 0 for a case it passed over), is which cases
of a family help and which help most; the utilities stay hidden. Per (task family, case id)
it keeps a discounted count and sum of targets (discount applied to both at each new outcome
of the pair, so a case that stops helping half-way is forgotten), and picks by Gaussian
Thompson sampling: score = posterior mean + sigma / sqrt(prior weight + count) * N(0, 1),
posterior mean = (prior mean * prior weight + sum) / (prior weight + count). From
`greedy_from` on (an episode number) it picks by the posterior mean alone.

Variants: `bound` (told the family of task and case) lets only candidates of the task's own
family compete; `bound-task` (told the task's family only) lets the `top` most similar
candidates of any family compete, so it must tell a case from its twin's by feedback alone.
Nothing is written to the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from memory_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from memory_agent.policies.base import Candidate, Feedback

BoundKind = Literal["bound", "bound-task"]
BOUND_KINDS: tuple[BoundKind, ...] = ("bound", "bound-task")
TOLD: dict[BoundKind, str] = {
    "bound": "the family of every task and every case",
    "bound-task": "the family of every task",
}
"""What each bound is told that no real policy knows (reported beside its figures)."""
# The stream's own generator is default_rng(seed); an offset keeps the bound's exploration
# draws apart from the stream's (and equal to those of the first scratch diagnosis).
SEED_OFFSET = 1000


@dataclass(frozen=True)
class BoundSettings:
    """The bound learner's knobs (defaults: the figures in BENCHMARKS.md)."""

    sigma: float = 0.2
    """Scale of the Thompson draw (0: no exploration beyond the prior's optimism)."""
    prior_mean: float = 0.4
    prior_weight: float = 1.0
    discount: float = 0.95
    """Applied to a pair's count and sum at each new outcome of the pair."""
    greedy_from: int | None = None
    """Episode from which picks use the posterior mean only (None: never)."""
    top: int = 20
    """`bound-task`: how many of the most similar candidates compete."""

    def __post_init__(self) -> None:
        problems = []
        if not self.sigma >= 0:
            problems.append(f"sigma must be >= 0 (got {self.sigma})")
        if not self.prior_weight > 0:
            problems.append(f"prior weight must be > 0 (got {self.prior_weight})")
        if not 0 < self.discount <= 1:
            problems.append(f"discount must lie in (0, 1] (got {self.discount})")
        if self.greedy_from is not None and self.greedy_from < 0:
            problems.append(f"greedy-from must be an episode >= 0 (got {self.greedy_from})")
        if self.top < 1:
            problems.append(f"top must be >= 1 (got {self.top})")
        if problems:
            raise InvalidInputError("Bad bound settings: " + "; ".join(problems) + ".")


class FamilyBound:
    """A learner told the hidden families: an upper bound, not a policy (see the module)."""

    owns_case_stats = True  # nothing for the runtime to credit; it keeps its own statistics

    def __init__(self, kind: BoundKind, seed: int, settings: BoundSettings | None = None) -> None:
        if kind not in BOUND_KINDS:
            raise InvalidInputError(f"Unknown bound {kind!r}; choose from {BOUND_KINDS}.")
        self.name: BoundKind = kind
        self.settings = settings or BoundSettings()
        self.knows_case_family = kind == "bound"
        self.rng = np.random.default_rng(SEED_OFFSET + seed)
        self.episode = 0  # decisions made so far: select is called once per episode
        self._stats: dict[tuple[int, int], tuple[float, float]] = {}  # discounted count, sum

    def posterior_mean(self, task_family: int, case_id: int) -> float:
        s = self.settings
        count, total = self._stats.get((task_family, case_id), (0.0, 0.0))
        return (s.prior_mean * s.prior_weight + total) / (s.prior_weight + count)

    def select(
        self,
        candidates: Sequence[Candidate],
        k: int,
        *,
        task_family: int,
        case_family: Mapping[int, int] | None,
    ) -> list[int]:
        """Up to `k` case ids, best first. `case_family` (case id -> family) is required for
        `bound` and must be None for `bound-task`, so what each is told stays explicit. With
        `bound` only the task's own family competes: if the shortlist holds fewer than `k`
        of its cases, fewer are shown."""
        s = self.settings
        if self.knows_case_family:
            if case_family is None:
                raise InvalidInputError("The bound told case families needs `case_family`.")
            pool = [c for c in candidates if case_family[c.case_id] == task_family]
        else:
            if case_family is not None:
                raise InvalidInputError("bound-task is told the task's family only.")
            pool = sorted(candidates, key=lambda c: -c.similarity)[: s.top]
        greedy = s.greedy_from is not None and self.episode >= s.greedy_from
        self.episode += 1
        if not pool:
            return []
        scores = np.asarray([self.posterior_mean(task_family, c.case_id) for c in pool])
        if not greedy and s.sigma > 0:
            counts = np.asarray([self._stats.get((task_family, c.case_id), (0.0, 0.0))[0]
                                 for c in pool])  # fmt: skip
            scores = scores + s.sigma / np.sqrt(s.prior_weight + counts) * self.rng.normal(
                size=len(pool)
            )
        # Ties (greedy, untried cases) go to the earlier candidate: the more similar one.
        order = np.argsort(-scores, kind="stable")[:k]
        return [pool[int(i)].case_id for i in order]

    def update(self, feedback: Feedback, *, task_family: int) -> None:
        """Learn from cited feedback: each shown case's target is the reward if it was used."""
        if feedback.citation != "cited":
            raise InvalidInputError(
                f"The bound learns from cited feedback only (got {feedback.citation!r})."
            )
        used = set(feedback.used)
        keep = self.settings.discount
        for case_id in feedback.shown:
            count, total = self._stats.get((task_family, case_id), (0.0, 0.0))
            target = feedback.reward if case_id in used else 0.0
            self._stats[(task_family, case_id)] = (count * keep + 1.0, total * keep + target)
