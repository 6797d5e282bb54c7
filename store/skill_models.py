"""The table of LoRA skills (migration 0008_skills); their adapter files live in the data dir.

Written by memory_agent.skills through store/skills.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from memory_agent.store.models import Base, CaseId, UTCDateTime, utcnow


class SkillRow(Base):
    """One version of a named skill: which base model it fits, how it was made, where its
    adapter file is and the file's checksum (a file that no longer matches is refused)."""

    __tablename__ = "skills"

    id: Mapped[int] = mapped_column(CaseId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    namespace: Mapped[str | None] = mapped_column(String(128))  # where its cases came from
    base_model: Mapped[str] = mapped_column(String(200))
    base_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the base model's weights file
    prompt_style: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer)
    scale: Mapped[float] = mapped_column(Float)  # the default injection scale
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)  # trained (settings) or combined (terms)
    cases: Mapped[dict[str, Any]] = mapped_column(JSON)  # case ids: train / held_out
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    file: Mapped[str] = mapped_column(String(255))  # relative to the data dir
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("name", "version", name="uq_skills_name_version"),)
