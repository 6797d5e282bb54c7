"""`SkillRecords`: the rows of the `skills` table (store/skill_models.py), read and written as
plain `SkillRecord`s. The adapter files are memory_agent.skills' business, not the store's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from memory_agent.store.skill_models import SkillRow


@dataclass(frozen=True)
class SkillRecord:
    """One stored version of a skill."""

    name: str
    version: int
    base_model: str
    base_hash: str
    prompt_style: str
    rank: int
    scale: float
    file: str
    file_sha256: str
    file_bytes: int
    namespace: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "namespace": self.namespace,
            "base_model": self.base_model,
            "base_hash": self.base_hash,
            "prompt_style": self.prompt_style,
            "rank": self.rank,
            "scale": self.scale,
            "recipe": self.recipe,
            "cases": self.cases,
            "metrics": self.metrics,
            "file": self.file,
            "file_sha256": self.file_sha256,
            "file_bytes": self.file_bytes,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def _record(row: SkillRow) -> SkillRecord:
    return SkillRecord(
        name=row.name, version=row.version, base_model=row.base_model, base_hash=row.base_hash,
        prompt_style=row.prompt_style, rank=row.rank, scale=row.scale, file=row.file,
        file_sha256=row.file_sha256, file_bytes=row.file_bytes, namespace=row.namespace,
        recipe=dict(row.recipe or {}), cases=dict(row.cases or {}),
        metrics=dict(row.metrics or {}), created_at=row.created_at,
    )  # fmt: skip


class SkillRecords:
    """Versioned skill rows: adding a name that exists adds its next version."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def next_version(self, name: str) -> int:
        with self._sessions() as session:
            latest = session.scalar(select(func.max(SkillRow.version)).where(SkillRow.name == name))
            return int(latest or 0) + 1

    def add(self, record: SkillRecord) -> SkillRecord:
        """Insert `record` at its version; IntegrityError if another writer took that version
        first (the caller picks the next one and retries)."""
        values = record.to_json()
        values.pop("created_at")
        with self._sessions.begin() as session:
            row = SkillRow(**values)
            session.add(row)
            session.flush()
            return _record(row)

    def get(self, name: str, version: int | None = None) -> SkillRecord | None:
        """The given version of `name`, or its newest; None if there is none."""
        query = select(SkillRow).where(SkillRow.name == name)
        if version is not None:
            query = query.where(SkillRow.version == version)
        with self._sessions() as session:
            row = session.scalars(query.order_by(SkillRow.version.desc()).limit(1)).first()
            return None if row is None else _record(row)

    def latest(self) -> list[SkillRecord]:
        """The newest version of every skill, by name."""
        newest = (
            select(SkillRow.name, func.max(SkillRow.version).label("v"))
            .group_by(SkillRow.name)
            .subquery()
        )
        query = select(SkillRow).join(
            newest, (SkillRow.name == newest.c.name) & (SkillRow.version == newest.c.v)
        )
        with self._sessions() as session:
            return [_record(r) for r in session.scalars(query.order_by(SkillRow.name))]

    def versions(self, name: str) -> list[SkillRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(SkillRow).where(SkillRow.name == name).order_by(SkillRow.version)
            )
            return [_record(r) for r in rows]

    def delete(self, name: str, version: int | None = None) -> list[SkillRecord]:
        """Remove one version of `name` (or all); returns what was removed."""
        with self._sessions.begin() as session:
            query = select(SkillRow).where(SkillRow.name == name)
            if version is not None:
                query = query.where(SkillRow.version == version)
            gone = [_record(r) for r in session.scalars(query)]
            condition = SkillRow.name == name
            if version is not None:
                condition = condition & (SkillRow.version == version)
            session.execute(delete(SkillRow).where(condition))
            return gone


__all__ = ["IntegrityError", "SkillRecord", "SkillRecords"]
