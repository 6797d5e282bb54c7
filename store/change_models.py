"""The vector change log's table (migration 0005; see store/index_sync.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from memory_agent.store.models import Base

Seq = BigInteger().with_variant(Integer(), "sqlite")


class VectorChangeRow(Base):
    """One write's effect on the searchable vectors of a namespace: cases that became
    searchable (`add`, with their codes or vectors in `cases`) or stopped being (`remove`).
    `case_ids` is little-endian int64; `writer` names the CaseMemory that wrote it, which
    already applied it to its own index."""

    __tablename__ = "vector_changes"

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    op: Mapped[str] = mapped_column(String(8))
    case_ids: Mapped[bytes] = mapped_column(LargeBinary)
    writer: Mapped[str] = mapped_column(String(32))
