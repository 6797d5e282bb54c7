"""Reservoir vectors as float16: the ring of recent raw embeddings is training data for
codebook upkeep, where half precision loses nothing measurable, and its bytes count in
`bytes_per_case` (512 x 384 float32 was 7.9 bytes per case at 100k cases).

Revision ID: 0006_reservoir_float16
Revises: 0005_vector_changes
Create Date: 2026-11-30
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0006_reservoir_float16"
# Linear history: this once revised 0002_codebooks beside the other migrations of its
# time; database.py collapses the version rows such stores were stamped with.
down_revision: str | None = "0005_vector_changes"
branch_labels: str | None = None
depends_on: str | None = None

_reservoir = sa.table(
    "vector_reservoir", sa.column("slot", sa.Integer()), sa.column("vector", sa.LargeBinary())
)


def _convert(source: str, target: str) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_reservoir.c.slot, _reservoir.c.vector)).all()
    for slot, blob in rows:
        vector = np.frombuffer(blob, source).astype(target)
        bind.execute(
            _reservoir.update().where(_reservoir.c.slot == slot).values(vector=vector.tobytes())
        )


def upgrade() -> None:
    _convert("float32", "float16")


def downgrade() -> None:
    _convert("float16", "float32")
