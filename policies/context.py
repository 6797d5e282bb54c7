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
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memory_agent.policies.base import Candidate, Stage, Vector
from memory_agent.policies.state import load_state, save_state

if TYPE_CHECKING:
    from memory_agent.store import CaseMemory

CONTEXT_FORMAT = 1
Floats = npt.NDArray[np.float64]


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

    def __init__(self, memory: CaseMemory, key: str, size: int) -> None:
        self.memory = memory
        self.key = key
        self.size = size
        self.history: dict[tuple[Stage, int], deque[tuple[Vector, float]]] = {}
        self.dirty = 0
        self._memo: tuple[object, dict[int, tuple[Floats, Floats]]] | None = None
        self._load()

    def add(self, stage: Stage, state: Vector, targets: Mapping[int, float]) -> None:
        unit = _unit(state)
        for case_id, target in targets.items():
            slot = self.history.setdefault((stage, int(case_id)), deque(maxlen=self.size))
            slot.append((unit, float(target)))
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
    ) -> tuple[Floats, Floats]:
        """(value, relevant weight) of each candidate for this task.

        `q`, `visits` are the stored per-case values: a visited case without history (saved
        before, or lost in a crash) keeps them. Every other case's value is
        (prior_weight·q_init + Σ w·target) / (prior_weight + Σ w) over its history.
        """
        out_q = q.copy()
        out_n = visits.copy()
        for i, (w, targets) in self._weights(state, candidates, stage, threshold).items():
            total = float(w.sum())
            # The stored value is the prior: what the case earned anywhere, until outcomes
            # on tasks like this one outweigh it.
            out_q[i] = (prior_weight * q[i] + float(w @ targets)) / (prior_weight + total)
            out_n[i] = total if total > 0.0 else visits[i]
        return out_q, out_n

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
            w = kernel((vectors @ _unit(state)).astype(np.float64), threshold)
            start = 0
            for i, past in zip(positions, pasts, strict=True):
                end = start + len(past)
                out[i] = (w[start:end], targets[start:end])
                start = end
        self._memo = (key, out)
        return out

    def forget(self, keep: set[int]) -> None:
        """Drop the history of cases no longer in memory."""
        for key in [k for k in self.history if k[1] not in keep]:
            del self.history[key]

    def save(self) -> None:
        if not self.history:
            return
        keys = list(self.history)
        lengths = np.asarray([len(self.history[k]) for k in keys], dtype=np.int64)
        case_ids = np.asarray([k[1] for k in keys], dtype=np.int64)
        stages = [k[0] for k in keys]
        vectors = np.concatenate([np.stack([v for v, _ in self.history[k]]) for k in keys])
        targets = np.concatenate([[y for _, y in self.history[k]] for k in keys])
        out = io.BytesIO()
        np.savez(
            out,
            lengths=lengths,
            case_ids=case_ids,
            vectors=vectors.astype(np.float16),
            targets=targets.astype(np.float32),
        )
        save_state(
            self.memory,
            self.key,
            out.getvalue(),
            format=CONTEXT_FORMAT,
            meta={"stages": stages, "size": self.size},
        )
        self.dirty = 0

    def _load(self) -> None:
        saved = load_state(self.memory, self.key)
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
            start = end


def _unit(state: Vector) -> Vector:
    s = np.asarray(state, dtype=np.float32)
    out: Vector = s / max(float(np.linalg.norm(s)), 1e-12)
    return out
