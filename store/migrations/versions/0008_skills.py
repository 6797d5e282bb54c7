"""LoRA skills: one row per version of a named skill; the adapter itself is a file in the data
directory, checked against `file_sha256` when loaded.

Revision ID: 0008_skills
Revises: 0007_rerank_vectors
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008_skills"
# 0007 is being written in parallel; whoever merges second re-chains this onto it.
down_revision: str | None = "0007_rerank_vectors"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "skills",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(128), nullable=True),
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
        sa.Column("prompt_style", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("cases", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("file", sa.String(255), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("file_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_skills_name_version"),
    )


def downgrade() -> None:
    op.drop_table("skills")
