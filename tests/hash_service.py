"""`serve.service_factory` for tests: the served store embeds with the HashEmbedder, so a
server (and each of its worker processes) starts in a moment with no model to load."""

from __future__ import annotations

from hash_embedder import HashEmbedder

from memory_agent.service import MemoryService
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


def make(settings: Settings) -> MemoryService:
    memory = CaseMemory(settings, embedder=HashEmbedder())  # type: ignore[arg-type]
    return MemoryService(settings, memory=memory, owns_memory=True,
                         embed_batch_size=settings.serve.embed_batch_size)  # fmt: skip
