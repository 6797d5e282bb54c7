"""Per-case credit: the reward of an episode goes to the cases the planner used.

The store's case statistics (`CaseMemory.case_stats`) have one owner; this is the runtime's
door to it. The runtime credits the cases used only for a policy that keeps no statistics of
its own: a policy declares `owns_case_stats` (learned policies write their rows in their
own `update`, so nothing is counted twice).
"""

from __future__ import annotations

from collections.abc import Sequence

from memory_agent.store import CaseMemory


def policy_owns_stats(policy: object) -> bool:
    """Whether `policy.update` itself writes the per-case statistics (`owns_case_stats`;
    a policy that does not say so leaves them to the runtime)."""
    return bool(getattr(policy, "owns_case_stats", False))


def credit_cases(memory: CaseMemory, case_ids: Sequence[int], stage: str, reward: float) -> None:
    """Add one visit with `reward` to each case's `stage` statistics (Monte-Carlo mean)."""
    memory.case_stats.credit(case_ids, stage, reward)
