"""Per-namespace access tokens: a namespace may be given a token, which every operation on it
must then present. Only a salted scrypt hash of the token is stored (store/namespace_tokens.py);
NULL means the namespace is open, as every namespace was before.

Revision ID: 0009_namespace_tokens
Revises: 0008_skills
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_namespace_tokens"
down_revision: str | None = "0008_skills"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("namespaces", sa.Column("token_hash", sa.String(255), nullable=True))
    op.add_column(
        "namespaces", sa.Column("token_changed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("namespaces") as batch:
        batch.drop_column("token_changed_at")
        batch.drop_column("token_hash")
