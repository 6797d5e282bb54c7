"""`value`: per-case, per-stage learned values combined with similarity (MemRL-style).

The score of a candidate is a weighted sum of two z-scores within the shortlist: its
similarity to the task and its learned value at the stage. Normalising both makes the
weight mean the same thing whatever the spread of similarities (which depends on the
embedder) or of rewards (which depends on the scorer). The values live in the store's
`case_stats` table and are written there on every update. The value used for a task is
conditioned on it (policies/context.py): outcomes earned on tasks like this one outweigh the
stored value, and a case whose outcomes were all earned on unrelated tasks (and that is
unrelated to this one) counts as unknown here. That history is saved by `save()` and every
`policy_save_every` updates.

When a family's task format changes, the examples that earned high values before the change
read almost like the correction stored at it, which is the case most similar to the new
tasks. Two rules keep that correction from being buried (tests/test_policy_drift.py): a new
case most similar to the task does not borrow the stale look-alikes' values as its prior
(`policy.neighbour_margin=0`, scoring.neighbour_prior), and a case shown for the first time
and passed over in a failed episode is not marked down for a failure that was not its own
(`policy.failed_unused=spare_untried`, credit.credit_targets). Applied to every task they
cost 3.7 points of the oracle ratio on `bench policy` (5 seeds), so by default
(`policy.drift_scope=on_drop`) they hold only for a task whose neighbourhood shows a drop: its
latest outcomes clearly below what tasks like it earned before (context.TaskContext.dropped).
`bench policy` has no such drop and keeps its figures (BENCHMARKS.md).

Those two rules keep the correction among the cases shown, but a small planner copies what
most shown examples do, and the stale examples never yet tried on the new format still carry
the values they earned before it (the format changed, the task vectors hardly: decimal and
hexadecimal count_bits questions sit at cosine ~0.85). So once a drop is noted on tasks like
this one (context.TaskContext.note_drop, after a failure; it stays noted after a success),
only outcomes since its onset count for them (`policy.drift_history=since_onset`): a case
with none is unknown and borrows its prior from its visited look-alikes, so the ranking falls
back to similarity, which puts the correction and the new-format successes first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory_agent.policies.base import Candidate, Stage, Vector
from memory_agent.policies.exploration import demote
from memory_agent.policies.learned import LearnedPolicy, Values
from memory_agent.policies.scoring import (
    drift_onset,
    foreign,
    margin_rule_holds,
    task_values,
    unrelated,
    value_scores,
)

CONTEXT_KEY = "value_context"


class ValuePolicy(LearnedPolicy):
    """Learned per-case values, per stage; explores by UCB or epsilon-greedy."""

    name = "value"
    context_key = CONTEXT_KEY

    def evaluate(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage
    ) -> tuple[Vector, Values]:
        since = drift_onset(state, stage, self.settings, self.context)
        values = task_values(state, candidates, stage, self.settings, self.context, since)
        drift = margin_rule_holds(state, stage, self.settings, self.context)
        scores = value_scores(candidates, stage, self.settings, values, drift_rules=drift)
        # A case known to serve another kind of task ranks after every other: otherwise its
        # prior would beat related cases that proved weak (a bit-counting example shown for a
        # spelling task). A new unrelated case is not demoted: it is unknown and gets tried.
        outside = foreign(state, candidates, stage, self.settings, self.context)
        # Similarity is the prior that evidence must overturn: a case unrelated to the task
        # (below MemRL's phase-A threshold) with no outcome on tasks like this one ranks
        # after every related case, whatever prior its unknown value gets (a spelling case
        # is no candidate for a bit-counting task because nothing is known of it there).
        # (The evidence: outcomes on tasks like this one, or the stored visits of a case whose
        # history was lost.)
        sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
        outside |= unrelated(sims, values[1], self.settings)
        return demote(scores, outside).astype(np.float32), values
