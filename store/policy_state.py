"""`PolicyStates`: a policy's own state (beyond per-case values) in the store's database.

One row per policy key; each save is a single transaction that replaces the payload and
bumps `version`, so a crash mid-save leaves the previous version intact and readable.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.store.models import utcnow
from memory_agent.store.policy_models import PolicyStateRow
from memory_agent.store.records import SavedState

_KEY_CHARS = 64  # policy_state.key is a VARCHAR(64)


def tenant_key(key: str, namespace: str) -> str:
    """The saved-state key of `key` for one namespace: `key@namespace`, or, when that would be
    too long for the column, `key#` and a hash of the namespace."""
    full = f"{key}@{namespace}"
    if len(full) <= _KEY_CHARS:
        return full
    return f"{key}#{hashlib.blake2b(namespace.encode('utf-8'), digest_size=16).hexdigest()}"


def _base_key(key: str) -> str:
    """The policy's own key (`neural`, `value_context`, ...) of a saved-state key."""
    cuts = [i for i in (key.find("@"), key.find("#")) if i >= 0]
    return key[: min(cuts)] if cuts else key


class PolicyStates:
    """Load, save, list and drop saved policy states."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def load(self, key: str) -> SavedState | None:
        with self._sessions() as session:
            row = session.get(PolicyStateRow, key)
            if row is None:
                return None
            return SavedState(row.key, row.version, row.format, dict(row.meta), bytes(row.payload))

    def save(self, key: str, payload: bytes, *, format: int, meta: dict[str, Any]) -> int:
        """Replace the saved state of `key`; returns the new version number."""
        with self._sessions.begin() as session:
            query = select(PolicyStateRow).where(PolicyStateRow.key == key)
            if session.bind is not None and session.bind.dialect.name == "postgresql":
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

    def summaries(self) -> list[dict[str, Any]]:
        """Every saved state's key, version, meta, size in bytes and time of saving."""
        query = select(
            PolicyStateRow.key,
            PolicyStateRow.version,
            PolicyStateRow.meta,
            func.length(PolicyStateRow.payload),
            PolicyStateRow.updated_at,
        ).order_by(PolicyStateRow.key)
        with self._sessions() as session:
            return [
                {"key": k, "version": v, "meta": m, "bytes": int(n or 0), "updated_at": t}
                for k, v, m, n, t in session.execute(query)
            ]

    def delete_namespace(self, namespace: str, *, legacy: bool = False) -> int:
        """Drop the saved states of one namespace (and, with `legacy`, the states saved before
        they were kept per namespace, which the default namespace inherits); returns how many
        there were."""
        with self._sessions.begin() as session:
            keys = list(session.scalars(select(PolicyStateRow.key)))
            doomed = [
                k for k in keys
                if k == tenant_key(_base_key(k), namespace) or (legacy and _base_key(k) == k)
            ]  # fmt: skip
            if doomed:
                session.execute(delete(PolicyStateRow).where(PolicyStateRow.key.in_(doomed)))
            return len(doomed)

    def delete_all(self) -> int:
        """Drop every saved state; returns how many there were."""
        with self._sessions.begin() as session:
            result = session.execute(delete(PolicyStateRow))
            return int(getattr(result, "rowcount", 0) or 0)
