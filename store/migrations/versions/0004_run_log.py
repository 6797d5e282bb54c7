"""Run log: one row per agent run and one per event in it (LLM call, tool call, retrieval,
reward, credit, memory write), with timings and token counts.

Revision ID: 0004_run_log
Revises: 0003_policy_state
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_run_log"
# Linear history: this once revised 0001_initial beside the other migrations of its
# time; database.py collapses the version rows such stores were stamped with.
down_revision: str | None = "0003_policy_state"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("prompt_style", sa.String(16), nullable=False),
        sa.Column("learn", sa.Boolean(), nullable=False),
        sa.Column("ground_truth", sa.Text(), nullable=True),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("reward_source", sa.String(16), nullable=True),
        sa.Column("citation", sa.String(16), nullable=True),
        sa.Column("cases_shown", sa.JSON(), nullable=False),
        sa.Column("cases_used", sa.JSON(), nullable=False),
        sa.Column("case_id", _ID, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=True),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "run_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_run_events_run_seq", "run_events", ["run_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_run_events_run_seq", "run_events")
    op.drop_table("run_events")
    op.drop_index("ix_runs_started_at", "runs")
    op.drop_table("runs")
