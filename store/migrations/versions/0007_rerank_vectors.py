"""A float16 copy of each case's embedding, kept once the store has switched to codes: the
store re-ranks the codes' candidates with it, so what a search returns is what exact search
would return, while the in-memory index holds only codes (BENCHMARKS.md, "Store").

Revision ID: 0007_rerank_vectors
Revises: 0006_reservoir_float16
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007_rerank_vectors"
down_revision: str | None = "0006_reservoir_float16"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("rerank_vector", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("rerank_vector")
