"""`similarity`: cosine top-K over the shortlist, the non-parametric baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory_agent.policies.base import (
    Candidate,
    Feedback,
    Selection,
    Stage,
    Vector,
)
from memory_agent.policies.scoring import greedy_selection


class SimilarityPolicy:
    """Picks the K most similar cases; learns nothing."""

    name = "similarity"
    owns_case_stats = False  # the runtime credits the cases it used

    def score(self, state: Vector, candidates: Sequence[Candidate], stage: Stage) -> Vector:
        return np.asarray([c.similarity for c in candidates], dtype=np.float32)

    def select(
        self,
        state: Vector,
        candidates: Sequence[Candidate],
        k: int,
        stage: Stage,
        *,
        explore: bool = True,
    ) -> Selection:
        scores = self.score(state, candidates, stage)
        return greedy_selection(scores, candidates, k, stage)

    def update(self, feedback: Feedback) -> None:
        """Similarity has nothing to learn."""

    def save(self) -> None:
        """Similarity has no state."""
