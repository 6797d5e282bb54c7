"""`track`: similarity ranks the cases; each case's own track record on tasks like this one
moves it up or down.

Why not `value`'s learned values with similarity as a weaker feature: with a real planner
(SmolLM2 on the drift stream, BENCHMARKS.md) similarity beat `value` by 32 points. The
records show how: a case the planner was shown but did not copy was marked down in a success
(the right worked example, beside a wrong one the lenient judge passed), and cases never tried
since a format change kept the values they earned before it. Both come from values standing
in for the similarity ranking. Here nothing stands in for it: a case's score is its
similarity plus `track_weight` times how far its record sits below even (0.5), or
`track_rise` times how far above, so a case with no record on tasks like this one ranks
exactly where similarity puts it, and only its own outcomes move it. Failures weigh more than
successes: on a strict judge a failure is real, while a success may be a lenient judge's, or
earned on a look-alike twin's tasks, which sit as close to the task as its own family does
for MiniLM (so the kernel cannot keep them apart).

The record of a case for a task: the outcomes of the episodes it was shown in, on tasks like
this one (the task context's kernel on task cosines, `policy.context_cos`), each weighted
- by whether the planner used it (`track_unused`, 0 by default: a case passed over in a
  failed episode was not tried, and burying it for another case's failure buried the
  correction stored at a format change in the LLM stream's records);
- by how recent it is among the case's outcomes on tasks like this one: each later such
  outcome multiplies an earlier one's weight by `track_recency`, so after a format change a
  stale example's old successes give way to its first failures on the new format, while
  outcomes on other kinds of tasks do not age it;
and shrunk towards even by `track_prior` outcomes. A case that fails drops below the unknown
cases next in similarity, which get shown next: that is the exploration, and it needs no
bonus.

Where tasks like this one started failing after succeeding (a drop noted after a failure,
`TaskContext.note_drop`, as `value` notes it), only outcomes since the drop's onset count, and
a case that succeeded on such tasks before it and has no outcome since starts from
`track_stale` instead of even: the examples that stopped working give way to the cases new
since the change (a correction, the first new-format successes).

With `track_baseline` (opt-in) an outcome counts by how far it sits above what episodes on
tasks like this one earn (their kernel-weighted reward, since a noted drop if any) rather than
above even. Built for the twins-only stream, where the right example sank with its kind of
task's first failure (the planner had copied the twin's line shown beside it) and an endless
supply of untried twin cases kept it out of reach; measured there it did not help (the twin's
tasks, all successes, count as tasks like this one, so the baseline stays high). What did help
is crediting only the case the output copied (`runtime.citation_margin`, the default).

Two opt-in variants, measured on the twins-only stream (BENCHMARKS.md): `track_model="ridge"`
reads a case's record off the ridge fit of its outcomes on their task vectors, evaluated at
this task, which tells a task from its twin where the kernel cannot (+1 point there, not yet
measured elsewhere); `track_method` starts a case from the record of the method its plan
carries (`policies/method.py`), built for the look-alikes right by chance that the twins
stream stores, and measured worse (a twin's method right on half the tasks sinks nothing).

Rewards are read on the 0..1 scale (failure 0, success 1): a record of 0.5 moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from memory_agent.policies.base import Candidate, Feedback, Selection, Stage, Vector
from memory_agent.policies.context import TaskContext
from memory_agent.policies.credit import check_feedback
from memory_agent.policies.learned import LearnedPolicy, Values
from memory_agent.policies.method import method_id, plan_method
from memory_agent.policies.scoring import greedy_selection
from memory_agent.store.policy_state import tenant_key

EVEN = 0.5
"""A record that says nothing either way (a reward half-way from failure to success)."""
CONTEXT_KEY = "track_context"
UNUSED_KEY = "track_unused"
METHOD_KEY = "track_method"

Floats = npt.NDArray[np.float64]


class TrackPolicy(LearnedPolicy):
    """Similarity plus each case's recent record on tasks like this one."""

    name = "track"
    context_key = CONTEXT_KEY
    tenant_fields = ("context", "unused", "methods")

    def start(self) -> None:
        # Outcomes of the episodes where a case was shown and not used: a second history of
        # the same shape, so the record can weigh them less. Not loaded (nor kept) at weight
        # 0, the default: nothing of it is read then.
        self.unused: TaskContext | None = None
        if self.settings.policy.track_unused > 0.0:
            key = tenant_key(UNUSED_KEY, self.namespace)
            self.unused = TaskContext(self.memory, key, self.settings.policy.context_size)
        # With `track_method`: the outcomes of each method (a plan with its values masked,
        # policies/method.py), keyed by the method's id where the others are keyed by case.
        # Not loaded (nor kept) when off: the policy reads nothing it will not use.
        self.methods: TaskContext | None = None
        if self.settings.policy.track_method:
            key = tenant_key(METHOD_KEY, self.namespace)
            self.methods = TaskContext(self.memory, key, self.settings.policy.context_size)
        self._method_of: dict[int, int | None] = {}

    def evaluate(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage
    ) -> tuple[Vector, Values]:
        sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
        record, weight = self.records(state, candidates, stage)
        policy = self.settings.policy
        # A record above even lifts a case less than one below it sinks it: a failure on a
        # strict judge is real, but a success may be a lenient judge's, and on a look-alike
        # twin's tasks (which sit as close as the task's own family for MiniLM) a case can
        # earn successes that say nothing of this task.
        gain = np.where(record > EVEN, policy.track_rise, policy.track_weight)
        scores = sims + gain * (record - EVEN)
        return scores.astype(np.float32), (record, weight)

    def records(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage
    ) -> tuple[Floats, Floats]:
        """(record, weight of the outcomes it rests on) of each candidate for this task."""
        policy = self.settings.policy
        threshold = policy.context_cos
        used = self.context.near_outcomes(state, candidates, stage, threshold)
        # At weight 0 (the default) nothing of the passed-over history is kept or read.
        passed = (
            {}
            if self.unused is None
            else self.unused.near_outcomes(state, candidates, stage, threshold)
        )
        stale = policy.track_stale
        fit, ridge = policy.track_model == "ridge", policy.context_ridge
        since = None if stale is None else self.context.noted_onset(state, stage, threshold)
        shift = 0.0
        if policy.track_baseline:
            # An outcome counts by how far it is above what tasks like this one earn: a
            # failure where everything fails says nothing against the case shown.
            expected = self.context.prior(
                state, stage, q_init=EVEN, prior_weight=policy.track_prior,
                threshold=threshold, since=since,
            )  # fmt: skip
            shift = EVEN - expected
        record = np.full(len(candidates), EVEN, dtype=np.float64)
        weight = np.zeros(len(candidates), dtype=np.float64)
        starts = np.full(len(candidates), EVEN, dtype=np.float64)
        if self.methods is not None:
            # A case starts from its method's record on tasks like this one (even where the
            # method has none): a look-alike carrying a method that fails here starts low.
            starts = self.method_records(state, candidates, stage, threshold, since)
            record[:] = starts
        for i in used.keys() | passed.keys():
            parts = [used.get(i), passed.get(i)]
            scale = [1.0, policy.track_unused]
            w = np.concatenate([p[0] * s for p, s in zip(parts, scale, strict=True) if p])
            y = np.concatenate([p[1] for p in parts if p])
            ticks = np.concatenate([p[2] for p in parts if p])
            order = np.argsort(ticks, kind="stable")
            w, y, ticks = w[order], y[order], ticks[order]
            prior = float(starts[i])
            if since is not None and stale is not None:
                # Since tasks like this one started failing, what a case earned before says
                # nothing good of it: a case that succeeded then and not since is what broke
                # (a stale example), so it starts below the cases new since the drop.
                before = ticks < since
                if float(w[before] @ y[before]) > 0.0:
                    prior = stale
                w, y = w[~before], y[~before]
                if w.size == 0:
                    record[i] = prior
                    continue
            w = self.aged(w)
            total = float(w.sum())
            evidence = float(w @ (y + shift))
            if fit and since is None and i not in passed:
                # The fit of every outcome the case had, at this task: where its successes
                # came on one kind of task and its failures on the twin, it tells them apart.
                case_id = candidates[i].case_id
                fitted = self.context.fitted(state, stage, case_id, ridge)
                evidence = total * (min(max(fitted, 0.0), 1.0) + shift)
            record[i] = (policy.track_prior * prior + evidence) / (policy.track_prior + total)
            weight[i] = total
        return record, weight

    def aged(self, w: Floats) -> Floats:
        """Outcome weights (oldest first) aged by recency: each later outcome on tasks like
        this one multiplies an earlier one's weight by `track_recency`."""
        later = np.concatenate([np.cumsum(w[::-1])[::-1][1:], [0.0]])
        out: Floats = w * self.settings.policy.track_recency**later
        return out

    def method_records(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        stage: Stage,
        threshold: float,
        since: int | None,
    ) -> Floats:
        """Per candidate, the record of the method its plan carries on tasks like this one
        (aged and shrunk to even like a case's; since a noted drop, only what came after
        it): even for a case without a plan, or a method with no outcome here."""
        out = np.full(len(candidates), EVEN, dtype=np.float64)
        if self.methods is None:
            return out
        ids = self.methods_of([c.case_id for c in candidates], candidates)
        first: dict[int, int] = {}
        for i, m in enumerate(ids):
            if m is not None:
                first.setdefault(m, i)
        if not first:
            return out
        # The methods' history is keyed by method id: ask it as if the methods were cases.
        asked = [replace(candidates[i], case_id=m) for m, i in first.items()]
        prior = self.settings.policy.track_prior
        by_method: dict[int, float] = {}
        for j, (w, y, ticks) in self.methods.near_outcomes(state, asked, stage, threshold).items():
            if since is not None:
                w, y = w[ticks >= since], y[ticks >= since]
            w = self.aged(w)
            by_method[asked[j].case_id] = (prior * EVEN + float(w @ y)) / (prior + float(w.sum()))
        for i, m in enumerate(ids):
            if m is not None and m in by_method:
                out[i] = by_method[m]
        return out

    def methods_of(
        self,
        case_ids: Sequence[int],
        candidates: Sequence[Candidate] = (),
        namespace: str | None = None,
    ) -> list[int | None]:
        """The method id of each case's plan (None: no plan, or no such case). Plans are
        read once per case and process: from the shortlist's text where it carries it, else
        from the store (a plan edited later keeps its first method here until a restart)."""
        missing = {i for i in case_ids if i not in self._method_of}
        if missing:
            plans = {c.case_id: c.text.plan for c in candidates
                     if c.case_id in missing and c.text is not None}  # fmt: skip
            unread = sorted(missing - plans.keys())
            if unread:
                ns = namespace or next((c.namespace for c in candidates if c.namespace), None)
                plans.update((c.id, c.plan) for c in self.memory.get_many(unread, namespace=ns))
            for i in missing:
                method = plan_method(plans.get(i))
                self._method_of[i] = None if method is None else method_id(method)
        return [self._method_of[i] for i in case_ids]

    def select(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        k: int,
        stage: Stage,
        *,
        explore: bool = True,
    ) -> Selection:
        """The K best scores (no exploration bonus: a failing case falls below the untried
        ones, which are shown next)."""
        self.use_namespace_of(candidates)
        scores, values = self.evaluate(state, candidates, stage)
        return greedy_selection(scores, candidates, k, stage, values)

    def learn(self, feedback: Feedback) -> dict[int, Any]:
        """Record the outcome for the cases used (and, where `track_unused` weighs them, for
        the cases passed over) and move the stored value of the cases used (`policy stats`
        reads those)."""
        check_feedback(feedback, self.memory.dim)
        self.use_namespace(feedback.namespace)
        reward = float(feedback.reward)
        shown = [int(i) for i in feedback.shown]
        flat = self.credit == "flat" or feedback.citation == "flat"
        used = set(shown) if flat else {int(i) for i in feedback.used}
        stats = self.memory.case_stats.apply(
            feedback.namespace,
            feedback.stage,
            {i: reward for i in shown if i in used},
            self.settings.policy.step_size,
            q_init=self.settings.policy.q_init,
            prior_visits=self.settings.policy.prior_visits,
            check_only=shown,
        )
        if self.unused is not None:
            # One clock for both histories, so their outcomes interleave by tick.
            self.context.clock = self.unused.clock = max(self.context.clock, self.unused.clock)
        if self.methods is not None:
            # On the cases' clock, so a noted drop's onset applies to both histories.
            self.methods.clock = self.context.clock
            credited = self.methods_of(sorted(used), namespace=feedback.namespace)
            targets = {m: reward for m in credited if m is not None}
            self.methods.add(feedback.stage, feedback.state, targets)
        self.context.add(feedback.stage, feedback.state, dict.fromkeys(used, reward), reward)
        if self.unused is not None:
            unused = {i: reward for i in shown if i not in used}
            self.unused.add(feedback.stage, feedback.state, unused)
        if reward <= 0.0 and self.settings.policy.track_stale is not None:
            self.context.note_drop(feedback.state, feedback.stage, self.settings.policy.context_cos)
        if self.context.dirty >= self.settings.policy.save_every:
            self.save_namespace()
        return stats

    def save_namespace(self) -> None:
        self.context.save()
        if self.unused is not None:
            self.unused.save()
        if self.methods is not None:
            self.methods.save()
