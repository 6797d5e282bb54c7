"""Compressed vector memory: versioned codebooks, the raw-vector reservoir, pending codes.

Revision ID: 0002_codebooks
Revises: 0001_initial
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_codebooks"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "codebooks",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("code_size", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("usage", sa.LargeBinary(), nullable=True),
        sa.Column("distortion", sa.Float(), nullable=False),
        sa.Column("trained_on", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "vector_reservoir",
        sa.Column("slot", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.add_column("cases", sa.Column("next_code", sa.LargeBinary(), nullable=True))
    op.add_column("cases", sa.Column("next_codebook_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "next_codebook_version")
    op.drop_column("cases", "next_code")
    op.drop_table("vector_reservoir")
    op.drop_table("codebooks")
