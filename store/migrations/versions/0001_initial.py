"""Initial schema: namespaces, cases, per-stage case statistics, store facts.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "namespaces",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("max_cases", sa.Integer(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "cases",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "namespace",
            sa.String(128),
            sa.ForeignKey("namespaces.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("trajectory", sa.JSON(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("code", sa.LargeBinary(), nullable=True),
        sa.Column("codebook_version", sa.Integer(), nullable=True),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.Column("deleted_reason", sa.String(32), nullable=True),
        sa.Column("merged_into", _ID, nullable=True),
    )
    op.create_index("ix_cases_namespace_live", "cases", ["namespace", "deleted_at"])
    op.create_index("ix_cases_namespace_hash", "cases", ["namespace", "content_hash"])
    op.create_table(
        "case_stats",
        sa.Column("case_id", _ID, sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("stage", sa.String(32), primary_key=True),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("q_value", sa.Float(), nullable=False),
        sa.Column("reward_sum", sa.Float(), nullable=False),
        sa.Column("last_reward", sa.Float(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_table("case_stats")
    op.drop_index("ix_cases_namespace_hash", "cases")
    op.drop_index("ix_cases_namespace_live", "cases")
    op.drop_table("cases")
    op.drop_table("namespaces")
