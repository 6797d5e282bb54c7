"""Policies by name, for settings, the CLI and the runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from memory_agent.policies.base import CasePolicy
    from memory_agent.store import CaseMemory

POLICY_NAMES: tuple[str, ...] = ("similarity", "value", "neural", "track")


def make_policy(name: str, memory: CaseMemory) -> CasePolicy:
    """The policy called `name`, with its saved state loaded from `memory`'s database."""
    if name == "similarity":
        from memory_agent.policies.similarity import SimilarityPolicy

        return SimilarityPolicy()
    if name == "value":
        from memory_agent.policies.value import ValuePolicy

        return ValuePolicy(memory)
    if name == "neural":
        from memory_agent.policies.neural import NeuralPolicy

        return NeuralPolicy(memory)
    if name == "track":
        from memory_agent.policies.track import TrackPolicy

        return TrackPolicy(memory)
    raise InvalidInputError(
        f"Unknown policy {name!r}; choose one of: {', '.join(POLICY_NAMES)} (or 'none' for "
        "no memory)."
    )
