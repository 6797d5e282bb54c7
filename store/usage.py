"""`Usage`: counts and sizes of the store, per case and per resource."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from memory_agent.store.database import redact
from memory_agent.store.models import CaseRow
from memory_agent.store.room import Room
from memory_agent.store.rows import require_namespace


class Usage(Room):
    """What `memory-agent memory stats` reports."""

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Counts and sizes of the store (or of one namespace).

        Sizes are per live case and per resource, since disk and RAM are budgeted apart:
        `bytes_per_case` is what the vector memory keeps at rest (the codes, or float32
        vectors before the first codebook, in the database, plus the codebooks and the
        reservoir of raw vectors kept for codebook upkeep, amortised over the cases);
        `ram_bytes_per_case` is what a process holds to search it (the index's codes and
        int64 ids, plus the codebooks and the reservoir); `total_bytes_per_case` is both.
        """
        with self.sessions() as session:
            base = select(CaseRow.namespace, func.count(), func.sum(
                func.coalesce(func.length(CaseRow.embedding), 0)
                + func.coalesce(func.length(CaseRow.code), 0)
                + func.coalesce(func.length(CaseRow.next_code), 0)
            )).where(CaseRow.deleted_at.is_(None))  # fmt: skip
            if namespace is not None:
                ns = self.namespace(namespace)
                require_namespace(session, ns)
                base = base.where(CaseRow.namespace == ns)
            per_ns = {
                name: (int(n), int(b or 0))
                for name, n, b in session.execute(base.group_by(CaseRow.namespace))
            }
            tombstoned = int(
                session.scalar(
                    select(func.count()).select_from(CaseRow).where(CaseRow.deleted_at.is_not(None))
                )
                or 0
            )
        cases = sum(n for n, _ in per_ns.values())
        stored = sum(b for _, b in per_ns.values())
        with self.lock:
            index_bytes = sum(
                idx.nbytes() for ns, idx in self.space.indexes.items() if ns in per_ns
            )
        keeper = self.keeper
        book, pending = keeper.active, keeper.pending
        codebook_bytes = sum(b.nbytes() for b in (book, pending) if b is not None)
        reservoir_bytes = keeper.reservoir_nbytes if book is not None else 0
        distortion = keeper.distortion()
        shared = codebook_bytes + reservoir_bytes  # held in the database and in memory

        def per_case(total: int) -> float:
            return total / cases if cases else 0.0

        return {
            "database": redact(self.memory.url),
            "cases": cases,
            "tombstoned": tombstoned,
            "namespaces": {name: n for name, (n, _) in sorted(per_ns.items())},
            "index_kind": "flat" if book is None else "opq-ivf-pq",
            "dim": self.space.dim,
            "embedder": self.space.embedder_name,
            "vector_bytes_stored": stored,
            "index_bytes": index_bytes,
            "codebook_bytes": codebook_bytes,
            "reservoir_bytes": reservoir_bytes,
            "bytes_per_case": per_case(stored + shared),
            "ram_bytes_per_case": per_case(index_bytes + shared),
            "total_bytes_per_case": per_case(stored + index_bytes + 2 * shared),
            "code_bytes": book.code_size if book is not None else None,
            "coarse_lists": book.nlist if book is not None else None,
            "codebook_version": book.version if book is not None else None,
            "dead_codewords": (
                book.dead_codewords(self.settings.store.dead_code_threshold)
                if book is not None
                else None
            ),
            "distortion": distortion,
            "pending_codebook_version": pending.version if pending is not None else None,
            "reindex_remaining": keeper.remaining(),
        }
