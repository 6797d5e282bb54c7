"""Saved policy state (neural Q weights, replay buffer), one versioned row per policy.

Revision ID: 0003_policy_state
Revises: 0002_codebooks
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_policy_state"
# Linear history: this once revised 0001_initial beside the other migrations of its
# time; database.py collapses the version rows such stores were stamped with.
down_revision: str | None = "0002_codebooks"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "policy_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_state")
