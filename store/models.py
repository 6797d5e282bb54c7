"""The system of record: SQLAlchemy 2.0 typed models. Schema changes go through migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite has no 64-bit autoincrement type of its own; INTEGER PRIMARY KEY is its rowid.
CaseId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class NamespaceRow(Base):
    """A tenant or agent scope. Cases, budgets and indexes are per namespace."""

    __tablename__ = "namespaces"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    max_cases: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The salted hash of the namespace's access token (store/namespace_tokens.py); None: open.
    token_hash: Mapped[str | None] = mapped_column(String(255))
    token_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CaseRow(Base):
    """One episodic case: what was asked, how it was planned and done, and how it went."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(CaseId, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(
        String(128), ForeignKey("namespaces.name", ondelete="CASCADE")
    )
    task: Mapped[str] = mapped_column(Text)
    plan: Mapped[str | None] = mapped_column(Text)
    trajectory: Mapped[Any | None] = mapped_column(JSON)
    answer: Mapped[str | None] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64), default="api")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 of (task, plan, answer): makes imports idempotent and finds exact duplicates.
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # The vector memory. `embedding` is the float32 vector the exact index is rebuilt from;
    # `code` is its quantised form and `codebook_version` the codebook that produced it.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    code: Mapped[bytes | None] = mapped_column(LargeBinary)
    codebook_version: Mapped[int | None] = mapped_column(Integer)
    # While `memory reindex` moves the store to a new codebook, the new code is written here
    # so the live index keeps serving the old version; the switch is one UPDATE at the end.
    next_code: Mapped[bytes | None] = mapped_column(LargeBinary)
    next_codebook_version: Mapped[int | None] = mapped_column(Integer)
    # Once the store keeps codes, a float16 copy of the embedding: the store re-ranks the
    # codes' candidates with it (exact-quality results), and re-encodes and retrains from it
    # rather than from decoded codes. It stays on disk; the in-memory index holds codes only.
    rerank_vector: Mapped[bytes | None] = mapped_column(LargeBinary)

    # Tombstone: deleted, evicted or merged cases stay for audit but leave every index.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_reason: Mapped[str | None] = mapped_column(String(32))
    merged_into: Mapped[int | None] = mapped_column(CaseId)

    __table_args__ = (
        Index("ix_cases_namespace_live", "namespace", "deleted_at"),
        Index("ix_cases_namespace_hash", "namespace", "content_hash"),
    )


class CaseStatRow(Base):
    """Value statistics of a case for one decision stage (`plan`, `refine`, ...)."""

    __tablename__ = "case_stats"

    case_id: Mapped[int] = mapped_column(
        CaseId, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    visits: Mapped[int] = mapped_column(Integer, default=0)
    q_value: Mapped[float] = mapped_column(Float, default=0.0)
    reward_sum: Mapped[float] = mapped_column(Float, default=0.0)
    last_reward: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class StoreMetaRow(Base):
    """Store-wide facts that must not change silently, such as the embedding dimension."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class CodebookRow(Base):
    """One version of the quantiser that turns embeddings into codes (see store/codebook.py)."""

    __tablename__ = "codebooks"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    # active: codes of live cases are of this version; pending: reindex is moving to it;
    # retired: kept so old codes (tombstoned cases) still decode.
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    dim: Mapped[int] = mapped_column(Integer)
    code_size: Mapped[int] = mapped_column(Integer)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    usage: Mapped[bytes | None] = mapped_column(LargeBinary)
    distortion: Mapped[float] = mapped_column(Float)
    trained_on: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReservoirRow(Base):
    """A ring of the most recent raw embeddings: the data dead codewords are re-seeded from."""

    __tablename__ = "vector_reservoir"

    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


__all__ = [
    "Base",
    "CodebookRow",
    "CaseRow",
    "CaseStatRow",
    "NamespaceRow",
    "ReservoirRow",
    "StoreMetaRow",
    "UTCDateTime",
    "utcnow",
]

# Tables owned by other areas live in their own modules; importing them here (last: they need
# Base) registers them on the same metadata.
from memory_agent.store import change_models as _change_models  # noqa: E402, F401
from memory_agent.store import run_log_models as _run_log_models  # noqa: E402, F401
from memory_agent.store import skill_models as _skill_models  # noqa: E402, F401
from memory_agent.store.policy_models import PolicyStateRow  # noqa: E402

__all__ += ["PolicyStateRow"]
