"""95% intervals for the stream's accuracies and for paired differences between policies.

- `wilson`: the Wilson score interval of a proportion (k of n tasks right); unlike the
  normal approximation it stays inside [0, 1] and is sensible at 0/n and n/n.
- `paired_bootstrap`: the mean difference of two policies on the same tasks, with a
  percentile bootstrap interval that resamples tasks within each seed (every seed keeps
  its number of tasks), so the pairing (same task, two policies) is kept and seeds with
  different difficulty are not mixed up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for `successes` of `n`; (0, 1) when n is 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"Wilson interval needs 0 <= successes <= n (got {successes}, {n})")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # 0/n and n/n give exactly 0 and 1 analytically; do not let float noise say otherwise
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def paired_bootstrap(
    differences: Mapping[int, Sequence[float]],
    *,
    iterations: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, low, high) of per-task differences grouped by seed, stratified by seed.

    Each group holds one difference per task (e.g. 1.0 - 0.0 when policy A got a task
    right that B missed). A resample draws each group's tasks with replacement and keeps
    the pooled mean; the interval is the percentile interval of those means.
    """
    groups = [np.asarray(list(values), dtype=np.float64) for values in differences.values()]
    groups = [g for g in groups if g.size]
    if not groups:
        raise ValueError("paired_bootstrap needs at least one difference")
    total = sum(g.size for g in groups)
    mean = float(sum(g.sum() for g in groups) / total)
    rng = np.random.default_rng(seed)
    sums = np.zeros(iterations, dtype=np.float64)
    for group in groups:
        picks = rng.integers(0, group.size, size=(iterations, group.size))
        sums += group[picks].sum(axis=1)
    means = sums / total
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return mean, float(low), float(high)
