"""Alembic environment: always run programmatically by `memory_agent.store.database`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from memory_agent.store.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached if someone runs `alembic` by hand
    raise RuntimeError(
        "memory-agent migrations run on open; use `memory-agent memory stats` to migrate a store"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
