"""memory-agent: an agent that improves from its own episodes through a case memory.

The public API. Names load on first use, so `import memory_agent` stays cheap and the
command line answers fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory_agent.agent import MemoryAgent, RunResult
    from memory_agent.errors import (
        CaseNotFoundError,
        DependencyMissingError,
        EmbedderError,
        ImportFileError,
        InvalidInputError,
        MemoryAgentError,
        StoreConnectionError,
        UnknownNamespaceError,
    )
    from memory_agent.settings import Settings
    from memory_agent.store import Case, CaseMemory, NewCase, SearchHit, StageStats

__version__ = "0.1.0"

_LAZY = {
    "Settings": "memory_agent.settings",
    "CaseMemory": "memory_agent.store",
    "Case": "memory_agent.store",
    "NewCase": "memory_agent.store",
    "SearchHit": "memory_agent.store",
    "StageStats": "memory_agent.store",
    "MemoryAgentError": "memory_agent.errors",
    "InvalidInputError": "memory_agent.errors",
    "ImportFileError": "memory_agent.errors",
    "UnknownNamespaceError": "memory_agent.errors",
    "CaseNotFoundError": "memory_agent.errors",
    "StoreConnectionError": "memory_agent.errors",
    "EmbedderError": "memory_agent.errors",
    "DependencyMissingError": "memory_agent.errors",
    "MemoryAgent": "memory_agent.agent",
    "RunResult": "memory_agent.agent",
}

__all__ = [
    "Case",
    "CaseMemory",
    "CaseNotFoundError",
    "DependencyMissingError",
    "EmbedderError",
    "ImportFileError",
    "InvalidInputError",
    "MemoryAgent",
    "MemoryAgentError",
    "NewCase",
    "RunResult",
    "SearchHit",
    "Settings",
    "StageStats",
    "StoreConnectionError",
    "UnknownNamespaceError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memory_agent' has no attribute {name!r}")
    return getattr(import_module(module), name)
