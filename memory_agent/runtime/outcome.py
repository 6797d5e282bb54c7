"""Applying a reward: credit the cases used, write or re-rate the case, update the policy.

The episode graph applies these steps in its nodes (credit per attempt, the policy at the
end); `MemoryAgent.feedback` applies them with a reward that arrives after the run, through
`apply_late_reward`. Either way the logic is the one here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.runtime.credit import credit_cases, policy_owns_stats
from memory_agent.runtime.state import CreditRecord

if TYPE_CHECKING:
    from memory_agent.policies.base import CasePolicy, Vector
    from memory_agent.store import CaseMemory, NewCase


def outcome_for(reward: float | None, answer: str | None) -> str | None:
    """The case's outcome label for `reward` (None: not rated yet)."""
    if reward is None:
        return "failure" if answer is None else None
    if reward >= 1.0:
        return "success"
    return "failure" if reward <= 0.0 else "partial"


def credit_record(
    stage: str, shown: Sequence[int], used: Sequence[int], reward: float, citation: str
) -> CreditRecord:
    return {
        "stage": stage,
        "shown": list(shown),
        "used": list(used),
        "reward": reward,
        "citation": citation,
    }


def credit_used(memory: CaseMemory, policy: CasePolicy | None, record: CreditRecord) -> None:
    """Add the reward to the used cases' statistics, unless the policy keeps them itself."""
    if not policy_owns_stats(policy):
        credit_cases(memory, record["used"], record["stage"], record["reward"])


def update_policy(policy: CasePolicy, namespace: str, state: Vector, record: CreditRecord) -> None:
    """Teach the policy one attempt's credit; raises what the policy raises."""
    from memory_agent.policies.base import Feedback

    policy.update(
        Feedback(
            namespace=namespace,
            stage=record["stage"],
            state=state,
            shown=record["shown"],
            used=record["used"],
            reward=record["reward"],
            citation="inferred" if record["citation"] == "inferred" else "cited",
        )
    )


def write_case(
    memory: CaseMemory, case: NewCase, namespace: str, vector: list[float] | None
) -> int | None:
    """Store the episode's case (None: a duplicate); reuses the task's vector if it fits."""
    usable = vector is not None and memory.dim in (None, len(vector))
    ids = memory.add_many(
        [case],
        namespace=namespace,
        skip_duplicates=True,
        embeddings=np.asarray([vector], dtype=np.float32) if usable else None,
    )
    return ids[0] if ids else None


def rate_case(
    memory: CaseMemory, namespace: str, case_id: int, reward: float, answer: str | None
) -> None:
    """Give a stored case of `namespace` a new reward and the outcome that follows from it."""
    try:
        memory.update(
            case_id, namespace=namespace, reward=reward, outcome=outcome_for(reward, answer)
        )
    except (CaseNotFoundError, InvalidInputError):
        pass  # the case was deleted or merged meanwhile; the run still records it


def apply_late_reward(
    memory: CaseMemory,
    policy: CasePolicy | None,
    *,
    namespace: str,
    task: str,
    case_id: int | None,
    answer: str | None,
    record: CreditRecord,
) -> None:
    """A finished run's reward, given later: credit, re-rate its case, teach the policy."""
    if record["shown"]:
        credit_used(memory, policy, record)
    if case_id is not None:
        rate_case(memory, namespace, case_id, record["reward"], answer)
    if policy is not None and record["shown"]:
        update_policy(policy, namespace, memory.embedder.embed([task])[0], record)
