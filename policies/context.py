"""Task-conditioned case values: what a case earned on tasks like this one.

A case's value in `case_stats` is one number per stage, whatever the task it was shown for,
so a method that earned a high value in one family also scores high on a related family's
tasks where it does not help (and a bit-counting example outranks a spelling one on a
spelling task). Here each case keeps its last few credited outcomes together with the task
vector they were earned on; its value for a new task is a kernel-weighted average of those
outcomes, weighting each by how similar its task is to this one, shrunk towards a prior.
Outcomes earned on unrelated tasks weigh nothing, so there the case is as unknown as a new
one. The history is saved to the store with the policy's other state (`save()` and every
`policy_save_every` updates); a case whose history is lost falls back to its stored value.

The kernel alone cannot tell a task from its twin: "1 bits in 777" and "0 bits in 777" sit at
cosine 0.96, two 1-bit tasks with other numbers at ~0.65, so everything the case earned on
both families counts the same. With `model="ridge"` (the default) the outcomes of tasks like
this one are not averaged but fitted: a ridge regression of the case's credited targets on
the task vectors of its history (centred, with an unpenalised mean), evaluated at this task.
The one direction that separates a family from its twin explains the targets of every
outcome, while slot values (numbers, words) vary at random, so the fit picks up the first;
the kernel still says how much of the history is about tasks like this one (the evidence).
Fits are kept per case until its history changes, so scoring is one dot product a case.

The context also keeps the reward of each recent episode with its task, so a policy can tell
where a kind of task has started to fail (`dropped`): the drift rules of `value` apply only
there when `policy.drift_scope=on_drop`.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from memory_agent.policies.base import Candidate, Stage, Vector
from memory_agent.policies.metric import TaskMetric

if TYPE_CHECKING:
    from memory_agent.store import CaseMemory

CONTEXT_FORMAT = 1
EPISODE_MEMORY = 512
# Drop detection (`TaskContext.dropped`): an episode counts as one of the task's neighbourhood
# at this kernel weight (cosine >= 0.61 for the default threshold 0.4: same family or its
# twin on MiniLM); the latest 1..DROP_RECENT such outcomes are compared with everything before
# them; a drop needs at least DROP_MIN_OLDER (kernel-weighted) older outcomes, and the mean
# chance of an older outcome being no more than DROP_MARGIN above each recent one at or below
# DROP_LEVEL (the margin: "clearly below"; rewards of a partial help or noise, a few tenths,
# are not a drop).
DROP_NEAR = 0.5
DROP_RECENT = 8
DROP_MIN_OLDER = 4.0
DROP_LEVEL = 0.1
DROP_MARGIN = 0.25
ONSET_MEMORY = 64  # drops noted per stage (`TaskContext.note_drop`)
Floats = npt.NDArray[np.float64]
ContextModel = Literal["kernel", "ridge"]


def kernel(cosines: Floats, threshold: float) -> Floats:
    """Weight of an outcome earned on a task at this cosine: 0 at or below `threshold`, full
    weight half-way from it to 1 and above (tasks of one kind, same template or wording, sit
    there), rising quadratically in between so a related kind of task counts only a little."""
    if threshold >= 1.0:
        return (cosines >= 1.0).astype(np.float64)
    w = np.clip((cosines - threshold) / ((1.0 - threshold) / 2.0), 0.0, 1.0)
    out: Floats = w * w
    return out


class TaskContext:
    """Per (stage, case) the last `size` (task vector, credited target) pairs."""

    def __init__(
        self, memory: CaseMemory, key: str, size: int, metric: TaskMetric | None = None
    ) -> None:
        self.memory = memory
        # How alike two tasks are for the kernel: raw cosine, or corrected by a metric
        # learned from every case's outcomes (policies/metric.py, `policy.context_metric`).
        self.metric = metric
        self.key = key
        self.size = size
        self.history: dict[tuple[Stage, int], deque[tuple[Vector, float]]] = {}
        # Per stage, the last episodes' (task vector, mean credited target): what a shown
        # case earns on tasks like this one on average, the prior for a case unknown here.
        self.episodes: dict[Stage, deque[tuple[Vector, float]]] = {}
        # Per stage, the last episodes' (task vector, reward): where outcomes dropped.
        self.outcomes: dict[Stage, RecentOutcomes] = {}
        # Every outcome carries the tick of its episode (`clock`: episodes added so far), so
        # that where a drop holds, what was earned before its onset can be set aside.
        self.clock = 0
        self.ticks: dict[tuple[Stage, int], deque[int]] = {}
        self.episode_ticks: dict[Stage, deque[int]] = {}
        # Per stage, the drops seen (task vector, onset tick): a drop stays noted after the
        # outcomes that showed it are no longer the latest (`note_drop`, `noted_onset`).
        self.onsets: dict[Stage, deque[tuple[Vector, float]]] = {}
        self.dirty = 0
        self._memo: tuple[object, dict[int, tuple[Floats, Floats]]] | None = None
        # Per (stage, case): the ridge fit of its history (mean task, weights, mean target).
        self._fits: dict[tuple[Stage, int], tuple[Floats, Floats, float]] = {}
        self._load()

    def add(
        self,
        stage: Stage,
        state: Vector,
        targets: Mapping[int, float],
        reward: float | None = None,
    ) -> None:
        """Remember the credited targets of an episode at this task (and its reward, if given:
        what `dropped` compares)."""
        unit = _unit(state)
        tick = self.clock
        for case_id, target in targets.items():
            self._ticks((stage, int(case_id))).append(tick)
            slot = self.history.setdefault((stage, int(case_id)), deque(maxlen=self.size))
            if self.metric is not None:
                self.metric.observe(slot, unit, float(target))
            slot.append((unit, float(target)))
            self._fits.pop((stage, int(case_id)), None)
        if targets:
            mean = float(np.mean([float(t) for t in targets.values()]))
            self._episode_ticks(stage).append(tick)
            self.episodes.setdefault(stage, deque(maxlen=EPISODE_MEMORY)).append((unit, mean))
        if reward is not None:
            past = self.outcomes.setdefault(stage, RecentOutcomes(EPISODE_MEMORY))
            past.append(unit, float(reward), tick)
        self.clock += 1
        self.dirty += 1
        self._memo = None

    def values(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        stage: Stage,
        q: Floats,
        visits: Floats,
        *,
        q_init: float,
        prior_weight: float,
        threshold: float,
        model: ContextModel = "kernel",
        ridge: float = 0.1,
        since: int | None = None,
    ) -> tuple[Floats, Floats]:
        """(value, relevant weight) of each candidate for this task.

        `q`, `visits` are the stored per-case values: a visited case without history (saved
        before, or lost in a crash) keeps them. A case with history gets
        (prior_weight·base + Σ w·target) / (prior_weight + Σ w) over it, where base is its
        stored value if some of the history was earned on tasks like this one and the task
        prior (`prior`) if none was; a case never shown gets the task prior. The weight
        returned is Σ w: the visits that count for this task. With `model="ridge"`, Σ w·target
        is replaced by Σ w times the case's ridge fit at this task (penalty `ridge`).

        `since` (the onset of a drop on tasks like this one, `onset`): only outcomes from that
        tick on count, the kernel-weighted mean of them, over the task prior of the episodes
        since then; a case with none is unknown here (the values it earned before the change
        say nothing of the tasks after it, so the ranking falls back to similarity).
        """
        if since is not None:
            return self._values_since(
                state, candidates, stage, since,
                q_init=q_init, prior_weight=prior_weight, threshold=threshold,
            )  # fmt: skip
        task_prior = self.prior(
            state, stage, q_init=q_init, prior_weight=prior_weight, threshold=threshold
        )
        out_q = q.copy()
        out_n = visits.copy()
        # A case never shown at this stage is worth what shown cases earn on tasks like this.
        out_q[visits == 0] = task_prior
        for i, (w, targets) in self._weights(state, candidates, stage, threshold).items():
            total = float(w.sum())
            # The prior is what the case earned anywhere, until outcomes on tasks like this
            # one outweigh it; a case with outcomes only on unrelated tasks is as unknown
            # here as a new one (its value elsewhere says nothing about this kind of task).
            base = q[i] if total > 0.0 else task_prior
            if model == "ridge" and total > 0.0:
                evidence = total * self.fitted(state, stage, candidates[i].case_id, ridge)
            else:
                evidence = float(w @ targets)
            out_q[i] = (prior_weight * base + evidence) / (prior_weight + total)
            out_n[i] = total
        return out_q, out_n

    def _values_since(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        stage: Stage,
        since: int,
        *,
        q_init: float,
        prior_weight: float,
        threshold: float,
    ) -> tuple[Floats, Floats]:
        """`values` counting only the outcomes from tick `since` on (kernel model)."""
        task_prior = self.prior(
            state, stage, q_init=q_init, prior_weight=prior_weight, threshold=threshold,
            since=since,
        )  # fmt: skip
        out_q = np.full(len(candidates), task_prior, dtype=np.float64)
        out_n = np.zeros(len(candidates), dtype=np.float64)
        for i, (w, targets) in self._weights(state, candidates, stage, threshold).items():
            ticks = self.ticks.get((stage, candidates[i].case_id))
            if ticks is None or len(ticks) != len(w):
                continue  # no ticks (an older blob): all earned before any onset seen here
            recent = np.asarray(ticks, dtype=np.int64) >= since
            if not recent.any():
                continue
            wr = w * recent
            total = float(wr.sum())
            out_q[i] = (prior_weight * task_prior + float(wr @ targets)) / (prior_weight + total)
            out_n[i] = total
        return out_q, out_n

    def prior(
        self,
        state: Vector,
        stage: Stage,
        *,
        q_init: float,
        prior_weight: float,
        threshold: float,
        since: int | None = None,
    ) -> float:
        """What a shown case earned on tasks like this one, on average (empirical Bayes).

        It is the value of a case with no outcome on tasks like this one: not the optimistic
        `q_init`, which would make every unrelated case worth a try on every kind of task,
        and not the case's value earned elsewhere. Before any episode like this one it is
        `q_init` (a new kind of task: everything is worth a try).
        """
        past = self.episodes.get(stage)
        if not past:
            return q_init
        vectors = np.stack([v for v, _ in past])
        means = np.asarray([y for _, y in past], dtype=np.float64)
        w = kernel(self.cosines(vectors, _unit(state)), threshold)
        if since is not None:
            # Since the onset of a drop (`since`): only the episodes from it on.
            w = w * (np.asarray(self._episode_ticks(stage), dtype=np.int64) >= since)
        return float((prior_weight * q_init + w @ means) / (prior_weight + w.sum()))

    def dropped(
        self, state: Vector, stage: Stage, threshold: float, latest: float | None = None
    ) -> bool:
        """Whether outcomes on tasks like this one have dropped: the latest few are
        improbably low against the older ones (`latest`: an outcome not yet added, the newest).

        For each j in 1..DROP_RECENT, the last j episodes of the task's neighbourhood are
        compared with every earlier one (weighted by the kernel): each recent reward x gets
        F(x) = (older weight at or below x + DROP_MARGIN, + 0.5) / (older weight + 1), the
        chance that an older outcome was not clearly higher; a drop is a mean F at or below
        DROP_LEVEL. After a run of successes a failure is a drop at once (a correction shown
        beside the stale examples must keep its chance from the first failure on); where
        outcomes were mixed or low (noisy rewards, partial help, a policy still exploring), a
        failure is not: F(0) is then the share of older outcomes near failure.
        """
        return self.onset(state, stage, threshold, latest) is not None

    def onset(
        self, state: Vector, stage: Stage, threshold: float, latest: float | None = None
    ) -> int | None:
        """The tick of the first outcome of the drop on tasks like this one (`dropped`: the
        oldest of the longest run of recent outcomes that is improbably low), None if none.
        `latest` counts as the newest outcome, at the next tick."""
        past = self.outcomes.get(stage)
        if past is None or not len(past):
            return None
        cosines, rewards = past.cosines(_unit(state))
        ticks = past.tick_order()
        w = kernel(cosines, threshold)
        if latest is not None:
            rewards = np.append(rewards, float(latest))
            w = np.append(w, 1.0)
            ticks = np.append(ticks, self.clock)
        near = np.flatnonzero(w >= DROP_NEAR)[::-1][:DROP_RECENT]  # newest first
        if near.size == 0:
            return None
        # Column j: the last j + 1 near outcomes against every outcome before the oldest of
        # them (`older weight`: total[j]); row i: recent outcome i. All in one go: this runs
        # on every selection.
        total = np.concatenate([[0.0], np.cumsum(w)])[near]
        recent = rewards[near]
        close = (rewards[None, :] <= recent[:, None] + DROP_MARGIN) * w[None, :]
        below = np.concatenate([np.zeros((near.size, 1)), np.cumsum(close, axis=1)], axis=1)
        chance = (below[:, near] + 0.5) / (total[None, :] + 1.0)
        counted = np.tri(near.size, dtype=bool).T  # recent outcome i is among the last j + 1
        mean = (chance * counted).sum(axis=0) / np.arange(1, near.size + 1)
        low = np.flatnonzero((mean <= DROP_LEVEL) & (total >= DROP_MIN_OLDER))
        return None if low.size == 0 else int(ticks[near[low[-1]]])

    def note_drop(self, state: Vector, stage: Stage, threshold: float) -> None:
        """After a failure: if outcomes on tasks like this one dropped, note the onset. A drop
        already noted here goes on (the window of `onset` slides with every failure) unless
        something succeeded here since it, and then failed again: a new change."""
        live = self.onset(state, stage, threshold)
        if live is None or live < 0:
            return
        noted = self.noted_onset(state, stage, threshold)
        if noted is not None and live <= noted:
            return
        if noted is not None:
            cosines, rewards = self.outcomes[stage].cosines(_unit(state))
            ticks = self.outcomes[stage].tick_order()
            near = kernel(cosines, threshold) >= DROP_NEAR
            between = near & (ticks >= noted) & (ticks < live)
            if not np.any(rewards[between] > DROP_LEVEL + DROP_MARGIN):
                return
        past = self.onsets.setdefault(stage, deque(maxlen=ONSET_MEMORY))
        past.append((_unit(state), float(live)))
        self.dirty += 1

    def noted_onset(self, state: Vector, stage: Stage, threshold: float) -> int | None:
        """The latest onset noted for tasks like this one (`note_drop`), None if none."""
        past = self.onsets.get(stage)
        if not past:
            return None
        vectors = np.stack([v for v, _ in past])
        near = kernel((vectors @ _unit(state)).astype(np.float64), threshold) >= DROP_NEAR
        if not near.any():
            return None
        return int(max(t for (_, t), n in zip(past, near, strict=True) if n))

    def _ticks(self, key: tuple[Stage, int]) -> deque[int]:
        """The ticks of the case's history (-1, before any onset, for outcomes loaded from a
        blob saved without ticks)."""
        ticks = self.ticks.get(key)
        if ticks is None:
            ticks = deque([-1] * len(self.history.get(key, ())), maxlen=self.size)
            self.ticks[key] = ticks
        return ticks

    def _episode_ticks(self, stage: Stage) -> deque[int]:
        ticks = self.episode_ticks.get(stage)
        if ticks is None:
            ticks = deque([-1] * len(self.episodes.get(stage, ())), maxlen=EPISODE_MEMORY)
            self.episode_ticks[stage] = ticks
        return ticks

    def fitted(self, state: Vector, stage: Stage, case_id: int, ridge: float) -> float:
        """The case's ridge fit of its credited targets at this task, in [-1, 1] (the case
        must have history at this stage)."""
        mean_task, coef, mean = self._fit(stage, case_id, ridge)
        unit = _unit(state).astype(np.float64)
        return float(np.clip(mean + (unit - mean_task) @ coef, -1.0, 1.0))

    def _fit(self, stage: Stage, case_id: int, ridge: float) -> tuple[Floats, Floats, float]:
        """The case's ridge fit: (mean task vector, weights, mean target), so its value at a
        task s is mean + (s - mean task)·weights. Solved in the dual (history × history)."""
        key = (stage, case_id)
        fit = self._fits.get(key)
        if fit is None:
            past = self.history[key]
            tasks = np.stack([v for v, _ in past]).astype(np.float64)
            targets = np.asarray([y for _, y in past], dtype=np.float64)
            mean_task = tasks.mean(axis=0)
            centred = tasks - mean_task
            mean = float(targets.mean())
            gram = centred @ centred.T + ridge * np.eye(len(targets))
            alpha = np.linalg.solve(gram, targets - mean)
            fit = (mean_task, centred.T @ alpha, mean)
            self._fits[key] = fit
        return fit

    def evidence(self, state: Vector, stage: Stage, case_id: int, threshold: float) -> float:
        """How much of the case's history was earned on tasks like this one (Σ kernel)."""
        past = self.history.get((stage, case_id))
        if not past:
            return 0.0
        vectors = np.stack([v for v, _ in past])
        return float(kernel(self.cosines(vectors, _unit(state)), threshold).sum())

    def knows(self, stage: Stage, case_id: int) -> bool:
        return bool(self.history.get((stage, case_id)))

    def relevance(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage, threshold: float
    ) -> Floats:
        """How much of each candidate's history was earned on tasks like this one (Σ kernel)."""
        out = np.zeros(len(candidates), dtype=np.float64)
        for i, (w, _) in self._weights(state, candidates, stage, threshold).items():
            out[i] = float(w.sum())
        return out

    def _weights(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage, threshold: float
    ) -> dict[int, tuple[Floats, Floats]]:
        """Per candidate position with history: (kernel weights, targets). One scoring asks
        for values and relevance of the same shortlist, so the last answer is kept."""
        key = (
            np.asarray(state, np.float32).tobytes(), stage, threshold,
            tuple(c.case_id for c in candidates), self.dirty,
        )  # fmt: skip
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        positions = [i for i, c in enumerate(candidates) if (stage, c.case_id) in self.history]
        out: dict[int, tuple[Floats, Floats]] = {}
        if positions:
            pasts = [self.history[(stage, candidates[i].case_id)] for i in positions]
            vectors = np.concatenate([np.stack([v for v, _ in past]) for past in pasts])
            targets = np.concatenate([[y for _, y in past] for past in pasts]).astype(np.float64)
            w = kernel(self.cosines(vectors, _unit(state)), threshold)
            start = 0
            for i, past in zip(positions, pasts, strict=True):
                end = start + len(past)
                out[i] = (w[start:end], targets[start:end])
                start = end
        self._memo = (key, out)
        return out

    def near_outcomes(
        self, state: Vector, candidates: Sequence[Candidate], stage: Stage, threshold: float
    ) -> dict[int, tuple[Floats, Floats, npt.NDArray[np.int64]]]:
        """Per candidate position with history: (kernel weights, targets, ticks), oldest
        first; outcomes loaded from a blob saved without ticks carry tick -1."""
        out: dict[int, tuple[Floats, Floats, npt.NDArray[np.int64]]] = {}
        for i, (w, targets) in self._weights(state, candidates, stage, threshold).items():
            ticks = np.asarray(self._ticks((stage, candidates[i].case_id)), dtype=np.int64)
            if len(ticks) != len(w):  # cannot happen after `add`; guard a hand-built blob
                ticks = np.full(len(w), -1, dtype=np.int64)
            out[i] = (w, targets, ticks)
        return out

    def cosines(self, vectors: npt.NDArray[np.float32], unit: Vector) -> Floats:
        """How alike each task of `vectors` is to the task `unit`, for the kernel."""
        if self.metric is not None:
            return self.metric.cosines(vectors, unit)
        out: Floats = (vectors @ unit).astype(np.float64)
        return out

    def forget(self, keep: set[int]) -> None:
        """Drop the history of cases no longer in memory."""
        for key in [k for k in self.history if k[1] not in keep]:
            del self.history[key]
            self.ticks.pop(key, None)
            self._fits.pop(key, None)

    def save(self) -> None:
        if not self.history and not self.episodes and not self.outcomes and not self.onsets:
            return
        keys = list(self.history)
        lengths = np.asarray([len(self.history[k]) for k in keys], dtype=np.int64)
        case_ids = np.asarray([k[1] for k in keys], dtype=np.int64)
        stages = [k[0] for k in keys]
        dim = self.memory.dim or 0
        vectors = _stack([v for k in keys for v, _ in self.history[k]], dim)
        targets = np.asarray([y for k in keys for _, y in self.history[k]], dtype=np.float32)
        episode_stages = list(self.episodes)
        episode_lengths = np.asarray([len(self.episodes[s]) for s in episode_stages], np.int64)
        episode_vectors = _stack([v for s in episode_stages for v, _ in self.episodes[s]], dim)
        episode_means = np.asarray(
            [y for s in episode_stages for _, y in self.episodes[s]], dtype=np.float32
        )
        outcome_stages = list(self.outcomes)
        outcome_lengths = np.asarray([len(self.outcomes[s]) for s in outcome_stages], np.int64)
        outcome_vectors = _stack([v for s in outcome_stages for v, _ in self.outcomes[s]], dim)
        outcome_rewards = np.asarray(
            [y for s in outcome_stages for _, y in self.outcomes[s]], dtype=np.float32
        )
        ticks = np.asarray([t for k in keys for t in self._ticks(k)], dtype=np.int64)
        episode_ticks = np.asarray(
            [t for s in episode_stages for t in self._episode_ticks(s)], dtype=np.int64
        )
        outcome_ticks = np.concatenate(
            [self.outcomes[s].tick_order() for s in outcome_stages] or [np.zeros(0, np.int64)]
        )
        onset_stages = list(self.onsets)
        onset_lengths = np.asarray([len(self.onsets[s]) for s in onset_stages], np.int64)
        onset_vectors = _stack([v for s in onset_stages for v, _ in self.onsets[s]], dim)
        onset_ticks_ = np.asarray([t for s in onset_stages for _, t in self.onsets[s]], np.float64)
        out = io.BytesIO()
        np.savez(
            out,
            lengths=lengths,
            case_ids=case_ids,
            vectors=vectors.astype(np.float16),
            targets=targets,
            episode_lengths=episode_lengths,
            episode_vectors=episode_vectors.astype(np.float16),
            episode_means=episode_means,
            outcome_lengths=outcome_lengths,
            outcome_vectors=outcome_vectors.astype(np.float16),
            outcome_rewards=outcome_rewards,
            ticks=ticks,
            episode_ticks=episode_ticks,
            outcome_ticks=outcome_ticks,
            onset_lengths=onset_lengths,
            onset_vectors=onset_vectors.astype(np.float16),
            onset_ticks=onset_ticks_,
        )
        self.memory.policy_states.save(
            self.key,
            out.getvalue(),
            format=CONTEXT_FORMAT,
            meta={
                "stages": stages,
                "size": self.size,
                "episode_stages": episode_stages,
                "outcome_stages": outcome_stages,
                "clock": self.clock,
                "onset_stages": onset_stages,
            },
        )
        self.dirty = 0

    def _load(self) -> None:
        saved = self.memory.policy_states.load(self.key)
        if saved is None or saved.format != CONTEXT_FORMAT:
            return
        data = np.load(io.BytesIO(saved.payload), allow_pickle=False)
        stages = list(saved.meta.get("stages", []))
        lengths, case_ids = data["lengths"], data["case_ids"]
        vectors = data["vectors"].astype(np.float32)
        targets = data["targets"]
        if len(stages) != len(lengths):
            return  # inconsistent blob: start afresh (stored values remain)
        start = 0
        for stage, case_id, n in zip(stages, case_ids, lengths, strict=True):
            end = start + int(n)
            slot: deque[tuple[Vector, float]] = deque(maxlen=self.size)
            slot.extend(
                (vectors[j], float(targets[j])) for j in range(max(start, end - self.size), end)
            )
            self.history[(str(stage), int(case_id))] = slot
            if "ticks" in data and len(data["ticks"]) == len(targets):
                kept = range(max(start, end - self.size), end)
                self.ticks[(str(stage), int(case_id))] = deque(
                    (int(data["ticks"][j]) for j in kept), maxlen=self.size
                )
            start = end
        # Saved without ticks: every outcome loaded counts as earned before any onset.
        self.clock = int(saved.meta.get("clock", 0))
        if self.metric is not None:
            self.metric.rebuild(self.history.values())
        # Saved before the task prior existed: it starts empty (q_init until episodes come);
        # saved before episode rewards were kept: no drop is seen until new ones come.
        self.episodes = _load_recent(data, saved.meta.get("episode_stages", []), "episode", "means")
        self.onsets = _load_recent(data, saved.meta.get("onset_stages", []), "onset", "ticks")
        episode_ticks = _load_ticks(data, "episode", saved.meta.get("episode_stages", []))
        for stage, ticks in episode_ticks.items():
            if len(ticks) == len(self.episodes.get(stage, ())):
                self.episode_ticks[stage] = deque(ticks, maxlen=EPISODE_MEMORY)
        loaded = _load_recent(data, saved.meta.get("outcome_stages", []), "outcome", "rewards")
        outcome_ticks = _load_ticks(data, "outcome", saved.meta.get("outcome_stages", []))
        for stage, pairs in loaded.items():
            recent = self.outcomes[stage] = RecentOutcomes(EPISODE_MEMORY)
            ticks = outcome_ticks.get(stage, [])
            for j, (vector, reward) in enumerate(pairs):
                recent.append(vector, reward, ticks[j] if len(ticks) == len(pairs) else -1)


class RecentOutcomes:
    """The last `size` (task vector, reward) pairs of a stage, oldest first, in a ring buffer:
    a drop test asks for all of them on every selection, so they stay one matrix."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0  # pairs ever appended; the newest is at (count - 1) % size
        self.vectors: npt.NDArray[np.float32] | None = None
        self.rewards = np.zeros(size, dtype=np.float64)
        self.ticks = np.full(size, -1, dtype=np.int64)

    def append(self, vector: Vector, reward: float, tick: int = -1) -> None:
        if self.vectors is None:
            self.vectors = np.zeros((self.size, vector.shape[0]), dtype=np.float32)
        slot = self.count % self.size
        self.vectors[slot] = vector
        self.rewards[slot] = reward
        self.ticks[slot] = tick
        self.count += 1

    def tick_order(self) -> npt.NDArray[np.int64]:
        """The tick of each pair, oldest first (-1: loaded from a blob saved without)."""
        out: npt.NDArray[np.int64] = self.ticks[self._order()]
        return out

    def __len__(self) -> int:
        return min(self.count, self.size)

    def _order(self) -> npt.NDArray[np.int64]:
        n = len(self)
        start = self.count - n
        return (np.arange(start, start + n) % self.size).astype(np.int64)

    def cosines(self, unit: Vector) -> tuple[Floats, Floats]:
        """(cosine of each pair's task to the unit vector `unit`, its reward), oldest first."""
        if self.vectors is None:
            return np.zeros(0), np.zeros(0)
        order = self._order()
        cosines: Floats = (self.vectors @ unit).astype(np.float64)[order]
        return cosines, self.rewards[order]

    def __iter__(self) -> Iterator[tuple[Vector, float]]:
        if self.vectors is None:
            return iter(())
        return ((self.vectors[i], float(self.rewards[i])) for i in self._order())


def _load_recent(
    data: Mapping[str, npt.NDArray[np.generic]], stages: Sequence[str], prefix: str, values: str
) -> dict[Stage, deque[tuple[Vector, float]]]:
    """Per stage, the saved (task vector, number) pairs of `<prefix>_lengths`,
    `<prefix>_vectors` and `<prefix>_<values>` (none if the blob predates them)."""
    out: dict[Stage, deque[tuple[Vector, float]]] = {}
    if f"{prefix}_lengths" not in data or len(stages) != len(data[f"{prefix}_lengths"]):
        return out
    vectors = data[f"{prefix}_vectors"].astype(np.float32)
    numbers = data[f"{prefix}_{values}"]
    start = 0
    for stage, n in zip(stages, data[f"{prefix}_lengths"], strict=True):
        end = start + int(n)
        past: deque[tuple[Vector, float]] = deque(maxlen=EPISODE_MEMORY)
        past.extend((vectors[j], float(numbers[j])) for j in range(start, end))
        out[str(stage)] = past
        start = end
    return out


def _load_ticks(
    data: Mapping[str, npt.NDArray[np.generic]], prefix: str, stages: Sequence[str]
) -> dict[Stage, list[int]]:
    """Per stage, the saved ticks of `<prefix>_ticks` (none if the blob predates them)."""
    key = f"{prefix}_ticks"
    if key not in data or f"{prefix}_lengths" not in data:
        return {}
    lengths = data[f"{prefix}_lengths"]
    if len(stages) != len(lengths) or int(lengths.sum()) != len(data[key]):
        return {}
    out: dict[Stage, list[int]] = {}
    start = 0
    for stage, n in zip(stages, lengths, strict=True):
        out[str(stage)] = [int(t) for t in data[key][start : start + int(n)]]
        start += int(n)
    return out


def _stack(vectors: list[Vector], dim: int) -> npt.NDArray[np.float32]:
    if not vectors:
        return np.zeros((0, dim), np.float32)
    return np.stack(vectors).astype(np.float32)


def _unit(state: Vector) -> Vector:
    s = np.asarray(state, dtype=np.float32)
    out: Vector = s / max(float(np.linalg.norm(s)), 1e-12)
    return out
