"""The persistent case store: SQL system of record, embedder and vector index."""

from memory_agent.store.case_memory import CaseMemory
from memory_agent.store.embedder import Embedder, OpenAIEmbedder, SentenceTransformerEmbedder
from memory_agent.store.records import Case, ImportReport, Merge, NewCase, SearchHit, StageStats

__all__ = [
    "Case",
    "CaseMemory",
    "Embedder",
    "ImportReport",
    "Merge",
    "NewCase",
    "OpenAIEmbedder",
    "SearchHit",
    "SentenceTransformerEmbedder",
    "StageStats",
]
