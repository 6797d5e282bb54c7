"""Picks the skills for a task: those whose training tasks resemble it.

A skill's score is the mean cosine similarity of the task to its `top` most similar
training tasks (the vectors its file carries); skills scoring at least `threshold` are
injected, best first, at most `max_skills` of them (settings `runtime.skill_router_*`; the
defaults below). The threshold is far above what unrelated
text scores with MiniLM (~0.15, see policy.min_similarity), and far below what another
instance of the same kind of question scores (~0.8 for the reasoning-gym families).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

THRESHOLD = 0.6
TOP = 3
MAX_SKILLS = 2


@dataclass(frozen=True)
class Routed:
    name: str
    score: float
    chosen: bool


def score(task_vector: Any, case_vectors: Any, top: int = TOP) -> float:
    """Mean of the `top` largest cosine similarities between the task and the cases."""
    import torch

    task = torch.as_tensor(task_vector, dtype=torch.float32).reshape(-1)
    cases = torch.as_tensor(case_vectors, dtype=torch.float32)
    if cases.ndim != 2 or cases.shape[0] == 0 or cases.shape[1] != task.shape[0]:
        return float("-inf")
    task = task / task.norm().clamp_min(1e-12)
    cases = cases / cases.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sims = cases @ task
    return float(sims.topk(min(top, sims.shape[0])).values.mean())


def route(
    task_vector: Any,
    skills: Sequence[tuple[str, Any]],
    *,
    threshold: float = THRESHOLD,
    max_skills: int = MAX_SKILLS,
    top: int = TOP,
) -> list[Routed]:
    """Every skill (name, case vectors) with its score, best first; `chosen` marks those to
    inject."""
    scored = sorted(
        ((name, score(task_vector, vectors, top)) for name, vectors in skills),
        key=lambda pair: -pair[1],
    )
    routed = []
    for rank, (name, value) in enumerate(scored):
        routed.append(Routed(name, value, value >= threshold and rank < max_skills))
    return routed
