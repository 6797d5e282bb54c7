"""Saving and loading a policy's own state (beyond per-case values) in the store's database.

One row per policy key; each save is a single transaction that replaces the payload and
bumps `version`, so a crash mid-save leaves the previous version intact and readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory_agent.store import CaseMemory


@dataclass(frozen=True, slots=True)
class SavedState:
    key: str
    version: int
    format: int
    meta: dict[str, Any]
    payload: bytes


def load_state(memory: CaseMemory, key: str) -> SavedState | None:
    from sqlalchemy.orm import Session

    from memory_agent.store.policy_models import PolicyStateRow

    with Session(memory.engine) as session:
        row = session.get(PolicyStateRow, key)
        if row is None:
            return None
        return SavedState(row.key, row.version, row.format, dict(row.meta), bytes(row.payload))


def save_state(
    memory: CaseMemory, key: str, payload: bytes, *, format: int, meta: dict[str, Any]
) -> int:
    """Replace the saved state of `key`; returns the new version number."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from memory_agent.store.models import utcnow
    from memory_agent.store.policy_models import PolicyStateRow

    with Session(memory.engine) as session, session.begin():
        query = select(PolicyStateRow).where(PolicyStateRow.key == key)
        if memory.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            row = PolicyStateRow(key=key, version=0)
            session.add(row)
        row.version += 1
        row.format = format
        row.meta = meta
        row.payload = payload
        row.updated_at = utcnow()
        version = row.version
    return version


def list_states(memory: CaseMemory) -> list[dict[str, Any]]:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from memory_agent.store.policy_models import PolicyStateRow

    query = select(
        PolicyStateRow.key,
        PolicyStateRow.version,
        PolicyStateRow.meta,
        func.length(PolicyStateRow.payload),
        PolicyStateRow.updated_at,
    ).order_by(PolicyStateRow.key)
    with Session(memory.engine) as session:
        return [
            {"key": k, "version": v, "meta": m, "bytes": int(n or 0), "updated_at": t}
            for k, v, m, n, t in session.execute(query)
        ]


def delete_states(memory: CaseMemory) -> int:
    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from memory_agent.store.policy_models import PolicyStateRow

    with Session(memory.engine) as session, session.begin():
        result = session.execute(delete(PolicyStateRow))
        return int(getattr(result, "rowcount", 0) or 0)
