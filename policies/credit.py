"""Credit assignment: which shown cases earn an episode's reward, and checks on feedback.

Per-case credit (the default): a case the planner cited gets the episode's reward; a case it
was shown but did not use gets a target of `unused_target` (0.0: it contributed nothing). A
case's learned value is then its expected contribution when shown,
P(used | shown) * E[reward | used], which separates useful cases from look-alikes the planner
reads and ignores. Shown-but-unused cases still count a visit, so UCB stops re-offering a
case the planner keeps ignoring. Flat credit (every shown case gets the reward, the reference
implementation's behaviour) stays available for comparison.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Literal

import numpy as np

from memory_agent.errors import InvalidInputError
from memory_agent.policies.base import REWARD_RANGE, Feedback

CreditMode = Literal["cited", "flat"]
_STAGE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_stage(stage: str) -> str:
    if not isinstance(stage, str) or not _STAGE.match(stage):
        raise InvalidInputError(
            f"Stage {stage!r} is not a valid stage name; use a short lowercase name such as "
            "'plan' or 'refine' (letters, digits, underscores; at most 32 characters)."
        )
    return stage


def check_feedback(feedback: Feedback, dim: int | None = None) -> None:
    """Reject malformed feedback before anything is written (the store checks ids next)."""
    check_stage(feedback.stage)
    reward = feedback.reward
    low, high = REWARD_RANGE
    if not isinstance(reward, int | float) or math.isnan(reward) or not low <= reward <= high:
        raise InvalidInputError(
            f"Feedback reward {reward!r} is not a number in [{low:g}, {high:g}]; map the "
            "outcome into that range (failure 0, success 1) before updating the policy."
        )
    if not feedback.shown:
        raise InvalidInputError("Feedback lists no shown cases; there is nothing to credit.")
    shown = [int(i) for i in feedback.shown]
    if len(set(shown)) != len(shown):
        raise InvalidInputError(f"Feedback shows a case twice: shown={shown}.")
    stray = [int(i) for i in feedback.used if int(i) not in set(shown)]
    if stray:
        raise InvalidInputError(
            f"Feedback says case {stray[0]} was used but it was not shown (shown={shown}); "
            "the planner can only cite cases it was given."
        )
    if feedback.citation not in ("cited", "inferred", "flat"):
        raise InvalidInputError(
            f"Feedback citation {feedback.citation!r} must be 'cited', 'inferred' or 'flat'."
        )
    state = np.asarray(feedback.state, dtype=np.float32)
    if state.ndim != 1 or (dim is not None and state.shape[0] != dim):
        want = f"{dim}" if dim is not None else "the store's"
        raise InvalidInputError(
            f"Feedback state must be one {want}-dimensional task embedding; got shape "
            f"{state.shape}."
        )
    if not np.isfinite(state).all():
        raise InvalidInputError("Feedback state contains NaN or infinite values.")


def failed_episode(reward: float, unused_target: float | None) -> bool:
    """Whether an episode failed in the sense of cited credit: its reward is at most what an
    unused case earns (none without an unused target)."""
    return unused_target is not None and reward <= unused_target


def credit_targets(
    feedback: Feedback,
    mode: CreditMode = "cited",
    unused_target: float | None = 0.0,
    *,
    spare_when_failed: Collection[int] = (),
) -> dict[int, float]:
    """The learning target of each shown case for this feedback (cases left out: no update).

    Flat credit applies when the policy is configured for it or when the feedback itself
    says the planner gave no citations (`citation="flat"`). In a failed episode (reward at
    most `unused_target`) the unused cases in `spare_when_failed` are left unchanged: the
    unused target says "contributed nothing, unlike the used cases", and when the used cases
    earned nothing either, that compares nothing. Above all, a case the planner passed over
    was not tried: a correction shown beside a stale example the planner copied must keep its
    chance rather than be buried by one failure that was not its own.
    """
    reward = float(feedback.reward)
    if mode == "flat" or feedback.citation == "flat":
        return {int(i): reward for i in feedback.shown}
    used = {int(i) for i in feedback.used}
    failed = failed_episode(reward, unused_target)
    spared = {int(i) for i in spare_when_failed} if failed else set()
    targets: dict[int, float] = {}
    for case_id in (int(i) for i in feedback.shown):
        if case_id in used:
            targets[case_id] = reward
        elif unused_target is not None and case_id not in spared:
            targets[case_id] = unused_target
    return targets
