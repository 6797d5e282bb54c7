"""Choosing K of the scored candidates, greedily or with exploration (UCB or epsilon-greedy).

Exploration is what produces counterfactuals: a case the greedy ranking would never show is
sometimes shown, so its value can be learned at all.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

Exploration = Literal["ucb", "epsilon", "none"]


def zscore(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Standard scores within one shortlist; all zeros when the values do not vary."""
    spread = float(values.std())
    if values.size == 0 or spread < 1e-9:
        return np.zeros_like(values)
    return (values - float(values.mean())) / spread


def ucb_bonus(visits: npt.NDArray[np.float64], c: float) -> npt.NDArray[np.float64]:
    """c * sqrt(ln(1 + N) / (1 + n)): large for cases seen rarely among often-seen ones."""
    total = float(visits.sum())
    bonus: npt.NDArray[np.float64] = c * np.sqrt(np.log1p(total) / (1.0 + visits))
    return bonus


def choose(
    scores: npt.NDArray[np.float64],
    visits: npt.NDArray[np.float64],
    k: int,
    *,
    mode: Exploration,
    epsilon: float,
    ucb_c: float,
    rng: np.random.Generator,
) -> tuple[list[int], list[bool]]:
    """Positions of the chosen candidates (best first) and whether each was an exploration pick."""
    k = min(k, scores.size)
    greedy = [int(i) for i in np.argsort(-scores, kind="stable")[:k]]
    if mode == "none" or k == 0:
        return greedy, [False] * k
    greedy_set = set(greedy)
    if mode == "ucb":
        boosted = scores + ucb_bonus(visits, ucb_c)
        order = [int(i) for i in np.argsort(-boosted, kind="stable")[:k]]
        return order, [i not in greedy_set for i in order]
    chosen: list[int] = []
    explored: list[bool] = []
    remaining = [int(i) for i in np.argsort(-scores, kind="stable")]
    for _ in range(k):
        if rng.random() < epsilon and len(remaining) > 1:
            pick = remaining[int(rng.integers(len(remaining)))]
        else:
            pick = remaining[0]
        remaining.remove(pick)
        chosen.append(pick)
        explored.append(pick not in greedy_set)
    return chosen, explored


def demote(
    scores: npt.NDArray[np.float64], outside: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Scores with every `outside` candidate below every other one, in their own order."""
    if not outside.any() or outside.all():
        return scores
    out = scores.copy()
    low = float(scores[~outside].min())
    shifted = scores[outside] - float(scores[outside].max())
    out[outside] = low - 1.0 + shifted / max(float(np.ptp(shifted)), 1e-9) * 1e-3
    return out
