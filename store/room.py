"""`Room`: what every part behind the `CaseMemory` facade shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memory_agent.store.case_memory import CaseMemory


class Room:
    """One job of the store (writing, maintenance, transfer, codebook upkeep, usage), with
    the store's settings, database, write lock, codebooks and vector space at hand. Rooms
    reach each other only through the facade (`self.memory`)."""

    def __init__(self, memory: CaseMemory) -> None:
        self.memory = memory
        self.settings = memory.settings
        self.engine = memory.engine
        self.sessions = memory._sessions
        self.lock = memory._lock
        self.keeper = memory._compression
        self.space = memory._space
        self.case_stats = memory.case_stats

    def namespace(self, namespace: str | None) -> str:
        """The namespace named, or the settings' default, checked (the name, and its access
        token if it has one: `CaseMemory.namespace_for`)."""
        return self.memory.namespace_for(namespace)
