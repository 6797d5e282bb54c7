"""Vector change log: what each write did to the searchable vectors, numbered in commit order,
so every process keeps its in-memory index in step with the database without reloading it.

Revision ID: 0005_vector_changes
Revises: 0004_run_log
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_vector_changes"
# Linear history: this once revised 0001_initial beside the other migrations of its
# time; database.py collapses the version rows such stores were stamped with.
down_revision: str | None = "0004_run_log"
branch_labels: str | None = None
depends_on: str | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "vector_changes",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("case_ids", sa.LargeBinary(), nullable=False),
        sa.Column("writer", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vector_changes")
