"""A task metric learned from every case's outcomes: the task directions that change them.

The context kernel (policies/context.py) counts an outcome as earned on "a task like this
one" by raw cosine, and on MiniLM a task and its twin ("1 bits" / "0 bits") sit as close as
two tasks of one family, so a twin family's working case counts as proven here. One case's
16 outcomes are too few to find the one-word template direction that separates the two
(BENCHMARKS.md, "Where `value` loses"); pooled over every case they are not. Each new
outcome of a case is paired with the case's earlier outcomes on near tasks (raw cosine at
least NEAR). Where one of the two helped (credited target at least SUCCESS) and the other
did not (below FAILURE), the difference of the two task vectors goes into A: the step
between a kind of task the case serves and one it does not, plus slot values (numbers,
words) at random. Where both helped it goes into B: two tasks of one kind, slot values
only. The top eigenvectors of A / |A| - CONTRAST · B / |B| are the directions along which
the kind of task changes and slot values do not; the metric lowers the cosine of two tasks
by `gain / 2` times their squared distance along them, so a twin's tasks leave the kernel's
"tasks like this one" while a family's own stay in it.

Only what a policy sees is used: task vectors and credited targets. Pairs are folded into A
and B and the directions recomputed every EVERY outcomes (a cost paid by one update in
EVERY, an eigendecomposition of dim × dim), and rebuilt from the saved histories when a
context is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
NEAR = 0.6  # pairs of tasks at least this similar (raw cosine): a kind and its twin
SUCCESS = 0.3  # a credited target at least this: the case helped
FAILURE = 0.05  # below this: it did not
CONTRAST = 2.0  # how much the spread between tasks of one kind counts against a direction
EVERY = 60  # outcomes between two recomputations of the directions

History = Sequence[tuple[npt.NDArray[np.floating], float]]


class TaskMetric:
    """Learned directions along which the kind of task changes, and the cosine they correct."""

    def __init__(self, *, rank: int = 6, gain: float = 30.0) -> None:
        self.rank = rank
        self.gain = gain
        self.directions: Floats | None = None  # (dim, ≤ rank), orthonormal columns
        self._a: Floats | None = None  # Σ d dᵀ over pairs where one helped and one did not
        self._b: Floats | None = None  # Σ d dᵀ over pairs where both helped
        self._pairs = np.zeros(2)  # pairs folded into A, B
        self._pending: list[tuple[Floats, Floats]] = []  # (differences, [in A, in B])
        self._outcomes = 0  # since the last recomputation

    def observe(self, past: History, task: npt.NDArray[np.floating], target: float) -> None:
        """A case earned `target` at unit task vector `task`; `past` is its earlier history
        of (unit task vector, target)."""
        self._pair(past, task, target)
        self._outcomes += 1
        if self._outcomes >= EVERY:
            self.refresh()

    def rebuild(self, histories: Iterable[History]) -> None:
        """Every pair within each history, as if observed one by one (after a load)."""
        for past in histories:
            items = list(past)
            for j in range(1, len(items)):
                self._pair(items[:j], items[j][0], items[j][1])
        self.refresh()

    def _pair(self, past: History, task: npt.NDArray[np.floating], target: float) -> None:
        if not past:
            return
        vectors = np.stack([v for v, _ in past]).astype(np.float64)
        targets = np.asarray([y for _, y in past], dtype=np.float64)
        unit = np.asarray(task, dtype=np.float64)
        near = vectors @ unit >= NEAR
        helped, y = target >= SUCCESS, targets[near]
        one_helped = (y >= SUCCESS) & (target < FAILURE) | (y < FAILURE) & helped
        both_helped = (y >= SUCCESS) & helped
        keep = one_helped | both_helped
        if keep.any():
            sides = np.stack([one_helped[keep], both_helped[keep]], axis=1).astype(np.float64)
            self._pending.append((vectors[near][keep] - unit, sides))

    def refresh(self) -> None:
        """Fold the pending pairs into A and B and recompute the directions."""
        self._outcomes = 0
        if self._pending:
            diffs = np.concatenate([d for d, _ in self._pending])
            sides = np.concatenate([s for _, s in self._pending])
            self._pending = []
            if self._a is None or self._b is None:
                dim = diffs.shape[1]
                self._a, self._b = np.zeros((dim, dim)), np.zeros((dim, dim))
            self._a += diffs.T @ (diffs * sides[:, :1])
            self._b += diffs.T @ (diffs * sides[:, 1:])
            self._pairs += sides.sum(axis=0)
        if self._a is None or self._b is None or not self._pairs.all():
            return
        contrast = self._a / self._pairs[0] - CONTRAST * self._b / self._pairs[1]
        values, vectors = np.linalg.eigh(contrast)
        top = vectors[:, -self.rank :][:, values[-self.rank :] > 0.0]
        self.directions = np.ascontiguousarray(top) if top.shape[1] else None

    def cosines(self, vectors: npt.NDArray[np.floating], unit: npt.NDArray[np.floating]) -> Floats:
        """The corrected cosine of each row of `vectors` (unit task vectors) to `unit`."""
        raw: Floats = (vectors @ unit).astype(np.float64)
        if self.directions is None or self.gain <= 0.0:
            return raw
        along = (vectors.astype(np.float64) - np.asarray(unit, np.float64)) @ self.directions
        out: Floats = raw - 0.5 * self.gain * (along * along).sum(axis=1)
        return out
