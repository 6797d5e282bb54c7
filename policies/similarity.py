"""`similarity`: cosine top-K over the shortlist, the non-parametric baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory_agent.policies.base import (
    Candidate,
    Considered,
    Feedback,
    Selection,
    Stage,
    Vector,
)


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
        order = np.argsort(-scores, kind="stable")[:k]
        shown = {int(i) for i in order}
        return Selection(
            stage=stage,
            case_ids=[candidates[i].case_id for i in order],
            scores=[float(scores[i]) for i in order],
            explored=[False] * len(order),
            considered=tuple(
                Considered(c.case_id, c.similarity, None, None, float(scores[i]), i in shown, False)
                for i, c in enumerate(candidates)
            ),
        )

    def update(self, feedback: Feedback) -> None:
        """Similarity has nothing to learn."""

    def save(self) -> None:
        """Similarity has no state."""
