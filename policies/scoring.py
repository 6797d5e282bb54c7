"""How the learned policies score and pick cases: the `value` score (similarity and learned
value as z-scores within the shortlist), the task-conditioned values it uses, MemRL's phase-A
gate for unrelated cases, and the selection step with exploration shared by `value` and
`neural`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memory_agent.policies.base import Candidate, Considered, Selection, Stage, Vector
from memory_agent.policies.context import TaskContext
from memory_agent.policies.exploration import Exploration, choose, zscore

if TYPE_CHECKING:
    from memory_agent.settings import Settings


def stage_values(
    candidates: Sequence[Candidate], stage: Stage, q_init: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(value, visits) of each candidate at `stage`; never-visited cases get `q_init`."""
    q = np.full(len(candidates), q_init, dtype=np.float64)
    n = np.zeros(len(candidates), dtype=np.float64)
    for i, c in enumerate(candidates):
        s = c.stats.get(stage)
        if s is not None and s.visits > 0:
            q[i], n[i] = s.q_value, s.visits
    return q, n


def neighbour_prior(
    candidates: Sequence[Candidate],
    q: npt.NDArray[np.float64],
    visits: npt.NDArray[np.float64],
    q_init: float,
    threshold: float,
    margin: float = 2.0,
    *,
    nearest_only: bool = False,
) -> npt.NDArray[np.float64]:
    """Values with each never-visited case's prior taken from its visited near neighbours.

    A new case that reads almost like cases already known to be useless (or useful) most
    likely is too: its prior is the average value of the visited candidates whose
    embeddings are at least `threshold`-cosine-similar to it, weighted by how much they
    exceed the threshold, shrunk towards `q_init`. Cases with no such neighbour keep `q_init`.
    A neighbour lends its value only if it matches the task about as well as the new case
    (its similarity at most `margin` below): what is known of cases that match the task
    worse says little of one that matches it better (a correction in a changed format reads
    like the stale examples it replaces, but it is the one closest to the new tasks). With
    `nearest_only` that rule holds for the shortlist's most similar case alone (the others
    borrow from every neighbour).
    """
    fresh = visits == 0
    if threshold >= 1.0 or not fresh.any() or fresh.all():
        return q
    emb = np.stack([c.embedding for c in candidates]).astype(np.float64)
    weights = np.clip(emb[fresh] @ emb[~fresh].T - threshold, 0.0, None) / (1.0 - threshold)
    if margin < 2.0:
        sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
        lends = sims[~fresh][None, :] >= sims[fresh][:, None] - margin
        if nearest_only:
            lends |= (sims[fresh] < sims.max())[:, None]
        weights *= lends
    total = weights.sum(axis=1)
    out = q.copy()
    out[fresh] = (q[fresh] * 0.5 + weights @ q[~fresh]) / (0.5 + total)
    return out


def task_values(
    state: Vector,
    candidates: Sequence[Candidate],
    stage: Stage,
    settings: Settings,
    context: TaskContext | None,
    since: int | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(value, relevant visits) of each candidate for this task (stored values without context);
    `since`: count only outcomes from that tick on (`drift_onset`)."""
    q, visits = stage_values(candidates, stage, settings.policy.q_init)
    if context is None:
        return q, visits
    q, visits = context.values(
        state, candidates, stage, q, visits,
        q_init=settings.policy.q_init,
        prior_weight=max(settings.policy.prior_visits, 1e-3),
        threshold=settings.policy.context_cos,
        model=settings.policy.context_model, ridge=settings.policy.context_ridge, since=since,
    )  # fmt: skip
    # A value earned only on unrelated tasks says nothing about this one (a bit-counting
    # example is no better on a spelling task for having helped with bit counting).
    # (A case with no history at all keeps its stored value: new, or its history was lost.)
    q[foreign(state, candidates, stage, settings, context)] = settings.policy.q_init
    return q, visits


def foreign(
    state: Vector,
    candidates: Sequence[Candidate],
    stage: Stage,
    settings: Settings,
    context: TaskContext,
) -> npt.NDArray[np.bool_]:
    """Cases that belong to another kind of task: unrelated to this one and every outcome in
    their history earned on unrelated tasks. A case with no history is merely unknown."""
    sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
    relevant = context.relevance(state, candidates, stage, settings.policy.context_cos)
    known = np.asarray([context.knows(stage, c.case_id) for c in candidates], dtype=bool)
    out: npt.NDArray[np.bool_] = unrelated(sims, relevant, settings) & known
    return out


def drift_rules_hold(
    state: Vector,
    stage: Stage,
    settings: Settings,
    context: TaskContext | None,
    latest: float | None = None,
) -> bool:
    """Whether the drift rules (`policy.failed_unused`, `policy.neighbour_margin`) hold for
    this task (`policy.drift_scope`): everywhere, or where outcomes on tasks like it dropped
    (`latest`: an outcome not yet learned, counted as the newest). Without a context no drop
    can be seen."""
    if settings.policy.drift_scope == "everywhere":
        return True
    if context is None:
        return False
    return context.dropped(state, stage, settings.policy.context_cos, latest)


def drift_onset(
    state: Vector, stage: Stage, settings: Settings, context: TaskContext | None
) -> int | None:
    """The tick from which a task's values count (`policy.drift_history=since_onset`): the
    onset of the latest drop noted on tasks like this one (`TaskContext.note_drop`), None
    where there is none (or the rule is off)."""
    if context is None or settings.policy.drift_history != "since_onset":
        return None
    return context.noted_onset(state, stage, settings.policy.context_cos)


def margin_rule_holds(
    state: Vector, stage: Stage, settings: Settings, context: TaskContext | None
) -> bool:
    """Whether `policy.neighbour_margin` applies to this task's scoring: the rule is on (a
    margin below 2) and the drift rules hold here. The drop test runs only when the rule is
    on: it is a cost on every selection."""
    return settings.policy.neighbour_margin < 2.0 and drift_rules_hold(
        state, stage, settings, context
    )


def value_scores(
    candidates: Sequence[Candidate],
    stage: Stage,
    settings: Settings,
    values: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    *,
    drift_rules: bool = True,
) -> npt.NDArray[np.float64]:
    """The `value` policy's score of each candidate (also a feature of `neural`).

    `values` are the (value, visits) to use, by default the stored per-case ones. Without
    `drift_rules` (`policy.drift_scope=on_drop` and no drop here) a new case borrows its
    prior from any neighbour, whatever `policy.neighbour_margin` says.
    """
    if not candidates:
        return np.zeros(0, dtype=np.float64)
    sims = np.asarray([c.similarity for c in candidates], dtype=np.float64)
    q_init = settings.policy.q_init
    q, visits = values if values is not None else stage_values(candidates, stage, q_init)
    nearby = settings.policy.neighbour_cos
    margin = settings.policy.neighbour_margin if drift_rules else 2.0
    q = neighbour_prior(
        candidates, q, visits, q_init, nearby, margin,
        nearest_only=settings.policy.neighbour_margin_scope == "nearest",
    )  # fmt: skip
    w = settings.policy.value_weight
    scores = (1.0 - w) * zscore(sims) + w * zscore(q)
    # Phase A of MemRL: only the cases most similar to the task compete (a case's values are
    # conditioned on the task by its context, but a near-irrelevant case stays out).
    recall = settings.policy.recall
    if len(candidates) > recall:
        outside = np.argsort(-sims, kind="stable")[recall:]
        if values is not None:
            # A case that proved itself on tasks like this one (task-conditioned visits)
            # competes however its text compares: the gate keeps out the unknown.
            outside = outside[visits[outside] < 1.0]
        scores[outside] = scores.min() - 1.0 - np.arange(outside.size) * 1e-6
    return scores


def unrelated(
    sims: npt.NDArray[np.float64],
    relevant: npt.NDArray[np.float64] | None,
    settings: Settings,
) -> npt.NDArray[np.bool_]:
    """Cases that must rank after the others: less similar than MemRL's phase-A threshold and
    without outcomes on tasks like this one. A bit-counting example that earned its value on
    bit-counting tasks never outranks a spelling case on a spelling task; a dissimilar case
    that did help on tasks like this one still can."""
    outside = sims < settings.policy.min_similarity
    if relevant is not None:
        outside &= relevant <= 0.0
    return outside


def select_shown(
    scores: npt.NDArray[np.float64],
    state: Vector,
    candidates: Sequence[Candidate],
    k: int,
    stage: Stage,
    *,
    settings: Settings,
    context: TaskContext,
    mode: Exploration,
    rng: np.random.Generator,
    scale_ucb: bool = False,
    values: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> Selection:
    """The K cases a learned policy shows, from its `scores`, exploring by `mode`.

    Fewer cases rather than a case known to serve another kind of task: a planner (above all
    a small one) copies what it is shown. With `scale_ucb` the UCB bonus is scaled by the
    spread of the scores (for scores on no fixed scale, such as a network's). `values` are
    the task-conditioned (value, evidence) of each candidate, for the explanation.
    """
    everyone, all_scores = list(candidates), scores
    _, visits = stage_values(candidates, stage, settings.policy.q_init)
    keep = np.flatnonzero(~foreign(state, candidates, stage, settings, context))
    if 0 < keep.size < len(candidates):
        candidates = [candidates[int(i)] for i in keep]
        scores, visits = scores[keep], visits[keep]
    ucb_c = settings.policy.ucb_c
    if scale_ucb:
        ucb_c *= max(float(scores.std()), 1e-3)
    order, explored = choose(
        scores, visits, k, mode=mode, epsilon=settings.policy.epsilon, ucb_c=ucb_c, rng=rng
    )
    ids = [candidates[i].case_id for i in order]
    return Selection(
        stage=stage,
        case_ids=ids,
        scores=[float(scores[i]) for i in order],
        explored=explored,
        considered=considered(everyone, all_scores, ids, explored, values),
    )


def greedy_selection(
    scores: npt.NDArray[np.float64] | npt.NDArray[np.float32],
    candidates: Sequence[Candidate],
    k: int,
    stage: Stage,
    values: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> Selection:
    """The K best-scored cases, no exploration (`similarity`, `track`), with the explanation."""
    order = np.argsort(-scores, kind="stable")[:k]
    ids = [candidates[int(i)].case_id for i in order]
    explored = [False] * len(ids)
    return Selection(
        stage=stage,
        case_ids=ids,
        scores=[float(scores[int(i)]) for i in order],
        explored=explored,
        considered=considered(candidates, scores.astype(np.float64), ids, explored, values),
    )


def considered(
    candidates: Sequence[Candidate],
    scores: npt.NDArray[np.float64],
    shown: Sequence[int],
    explored: Sequence[bool],
    values: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None,
) -> tuple[Considered, ...]:
    """The explanation of a selection: every candidate with what the policy made of it."""
    picked = dict(zip(shown, explored, strict=True))
    return tuple(
        Considered(
            case_id=c.case_id,
            similarity=float(c.similarity),
            value=None if values is None else float(values[0][i]),
            evidence=None if values is None else float(values[1][i]),
            score=float(scores[i]),
            shown=c.case_id in picked,
            explored=picked.get(c.case_id, False),
        )
        for i, c in enumerate(candidates)
    )
