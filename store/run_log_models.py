"""SQLAlchemy models of the run log (migration 0004_run_log). Written by the agent runtime."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from memory_agent.store.models import Base, CaseId, UTCDateTime, utcnow


class RunRow(Base):
    """One agent run: the task, what was shown and used, the answer and its reward."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    model: Mapped[str] = mapped_column(String(200))
    policy: Mapped[str] = mapped_column(String(32))
    prompt_style: Mapped[str] = mapped_column(String(16))
    learn: Mapped[bool] = mapped_column(Boolean)
    ground_truth: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float)
    reward_source: Mapped[str | None] = mapped_column(String(16))
    citation: Mapped[str | None] = mapped_column(String(16))
    cases_shown: Mapped[list[int]] = mapped_column(JSON, default=list)
    cases_used: Mapped[list[int]] = mapped_column(JSON, default=list)
    case_id: Mapped[int | None] = mapped_column(CaseId)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    elapsed_s: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_runs_started_at", "started_at"),)


class RunEventRow(Base):
    """One step of a run: kind is retrieval, llm, tool, reward, credit, memory or error."""

    __tablename__ = "run_events"

    id: Mapped[int] = mapped_column(CaseId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_s: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_run_events_run_seq", "run_id", "seq"),)
