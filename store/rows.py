"""Row helpers every part of the store shares: case records from rows, content hashes,
filters, namespace rows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from memory_agent.errors import InvalidInputError, UnknownNamespaceError
from memory_agent.store.database import insert_if_absent
from memory_agent.store.models import CaseRow, NamespaceRow, utcnow
from memory_agent.store.records import Case, StageStats

Progress = Callable[[int], None]
"""Called with the number of items just finished (for progress bars)."""

StoredVector = tuple[int, bytes | None, bytes | None, int | None]
"""A case's searchable part as stored: (id, code, raw float32 vector, codebook version)."""

_COLUMN_FILTERS = {"outcome", "source", "min_reward", "max_reward"}


def content_hash(task: str, plan: str | None, answer: str | None) -> str:
    joined = "\x00".join((task, plan or "", answer or ""))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


CASE_COLUMNS = (
    CaseRow.id, CaseRow.namespace, CaseRow.task, CaseRow.plan, CaseRow.trajectory, CaseRow.answer,
    CaseRow.reward, CaseRow.outcome, CaseRow.source, CaseRow.meta, CaseRow.created_at,
    CaseRow.updated_at, CaseRow.codebook_version,
)  # fmt: skip
"""The columns `to_case` reads: a read of cases to hand back selects these, not the vectors."""


def to_case(row: Any, stats: Mapping[str, StageStats] | None = None) -> Case:
    """A `Case` from a `CaseRow` or a row of `CASE_COLUMNS`."""
    return Case(
        id=row.id,
        namespace=row.namespace,
        task=row.task,
        plan=row.plan,
        trajectory=row.trajectory,
        answer=row.answer,
        reward=row.reward,
        outcome=row.outcome,
        source=row.source,
        meta=dict(row.meta or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        stats=dict(stats or {}),
        codebook_version=row.codebook_version,
    )


def filter_clause(filters: Mapping[str, Any]) -> list[Any]:
    clauses: list[Any] = []
    for key, value in filters.items():
        if key == "min_reward":
            clauses.append(CaseRow.reward >= float(value))
        elif key == "max_reward":
            clauses.append(CaseRow.reward <= float(value))
        elif key in ("outcome", "source"):
            clauses.append(getattr(CaseRow, key) == value)
        elif isinstance(value, bool):
            clauses.append(CaseRow.meta[key].as_boolean() == value)
        elif isinstance(value, int | float):
            clauses.append(CaseRow.meta[key].as_float() == float(value))
        elif isinstance(value, str):
            clauses.append(CaseRow.meta[key].as_string() == value)
        else:
            raise InvalidInputError(
                f"Filter {key!r} has a value of type {type(value).__name__}; filters take "
                f"strings, numbers or booleans ({', '.join(sorted(_COLUMN_FILTERS))} match "
                "case fields, any other key matches a meta field)."
            )
    return clauses


def require_namespace(session: Session, namespace: str) -> NamespaceRow:
    row = session.get(NamespaceRow, namespace)
    if row is None:
        known = list(session.scalars(select(NamespaceRow.name).order_by(NamespaceRow.name)))
        hint = f"Known namespaces: {', '.join(known)}." if known else "The store is empty."
        raise UnknownNamespaceError(
            f"Namespace {namespace!r} does not exist. {hint} "
            "Add a case to it first, or pick one with --namespace."
        )
    return row


def ensure_namespace(session: Session, namespace: str) -> NamespaceRow:
    row = session.get(NamespaceRow, namespace)
    if row is None:
        # Two processes writing a new namespace's first case at once both get here.
        insert_if_absent(
            session, NamespaceRow.__table__, {"name": namespace, "created_at": utcnow()}
        )
        row = session.get(NamespaceRow, namespace)
        assert row is not None
    return row
