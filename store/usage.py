"""`Usage`: counts and sizes of the store, per case and per resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from memory_agent.store.codebook import CodeIndex
from memory_agent.store.database import redact
from memory_agent.store.models import CaseRow, CodebookRow, ReservoirRow
from memory_agent.store.rerank import copies_dropped
from memory_agent.store.room import Room
from memory_agent.store.rows import require_namespace

_VECTOR_COLUMNS = (CaseRow.embedding, CaseRow.code, CaseRow.next_code, CaseRow.rerank_vector)


class Usage(Room):
    """What `memory-agent memory stats` reports."""

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Counts and sizes of the store (or of one namespace).

        Sizes are per live case and per resource, counting every copy:

        - `ram_bytes_per_case`: what a searching process holds for vector search: each
          namespace's index (float32 vectors, or codes, with their int64 ids), every
          codebook copy (the store's own and one inside each namespace's index), the
          reservoir of recent raw vectors;
        - `disk_bytes_per_case`: the vector columns in the database (float32 vectors, codes,
          pending codes, float16 re-rank copies; tombstoned cases too), every kept codebook
          version, the reservoir;
        - `bytes_per_case`: the larger of the two; `database_file_bytes_per_case`: the whole
          SQLite file (and its WAL) with the case text, for comparison.

        `rerank_mode` says how a search ranks: `exact` (float32 vectors, before the switch),
        `float16` (codes propose, the float16 copies on disk re-rank) or `codes` (codes
        alone: `store.rerank` off, or the copies dropped past `store.rerank_disk_budget_mb`,
        which `rerank_copies_dropped` records for the whole store).
        """
        with self.sessions() as session:
            length = sum(func.coalesce(func.length(c), 0) for c in _VECTOR_COLUMNS)
            base = select(
                CaseRow.namespace,
                func.count(),
                func.sum(length),
                func.sum(func.coalesce(func.length(CaseRow.rerank_vector), 0)),
                CaseRow.deleted_at.is_(None),
            ).group_by(CaseRow.namespace, CaseRow.deleted_at.is_(None))
            if namespace is not None:
                ns = self.namespace(namespace)
                require_namespace(session, ns)
                base = base.where(CaseRow.namespace == ns)
            per_ns: dict[str, int] = {}
            stored = tombstoned = copies = 0
            for name, n, size, half, live in session.execute(base):
                stored += int(size or 0)
                copies += int(half or 0)
                if live:
                    per_ns[name] = per_ns.get(name, 0) + int(n)
                else:
                    tombstoned += int(n)
            codebook_disk = int(
                session.scalar(
                    select(
                        func.sum(
                            func.length(CodebookRow.blob)
                            + func.coalesce(func.length(CodebookRow.usage), 0)
                        )
                    )
                )
                or 0
            )
            reservoir_disk = int(
                session.scalar(select(func.sum(func.length(ReservoirRow.vector)))) or 0
            )
            # From the database, not this process's view: another process may have dropped them.
            dropped = copies_dropped(session)
        cases = sum(per_ns.values())
        keeper = self.keeper
        book, pending = keeper.active, keeper.pending
        with self.lock:
            indexes = [idx for ns, idx in self.space.indexes.items() if ns in per_ns]
            index_bytes = sum(idx.nbytes() for idx in indexes)
            # Each namespace's index searches through its own clone of the codebook.
            codebook_ram = sum(b.nbytes() for b in keeper.loaded_books()) + sum(
                idx.codebook.nbytes() for idx in indexes if isinstance(idx, CodeIndex)
            )
        reservoir_ram = keeper.reservoir_nbytes if book is not None else 0
        if book is None:
            reservoir_disk = 0  # rows a store wrote before it switched are not read
        ram = index_bytes + codebook_ram + reservoir_ram
        disk = stored + codebook_disk + reservoir_disk

        def per_case(total: int) -> float:
            return total / cases if cases else 0.0

        file_bytes = _sqlite_file_bytes(self.memory.url)
        if book is None:
            mode = "exact"
        elif self.settings.store.rerank and not dropped:
            mode = "float16"
        else:
            mode = "codes"
        return {
            "database": redact(self.memory.url),
            "cases": cases,
            "tombstoned": tombstoned,
            "namespaces": dict(sorted(per_ns.items())),
            "index_kind": "flat" if book is None else "opq-ivf-pq",
            "rerank": mode == "float16",
            "rerank_mode": mode,
            "rerank_copies_dropped": dropped,
            "rerank_copy_bytes": copies,
            "rerank_disk_budget_mb": self.settings.store.rerank_disk_budget_mb,
            "dim": self.space.dim,
            "embedder": self.space.embedder_name,
            "vector_bytes_stored": stored,
            "index_bytes": index_bytes,
            "codebook_bytes": codebook_ram,
            "codebook_disk_bytes": codebook_disk,
            "reservoir_bytes": reservoir_ram,
            "ram_bytes_per_case": per_case(ram),
            "disk_bytes_per_case": per_case(disk),
            "bytes_per_case": per_case(max(ram, disk)),
            "total_bytes_per_case": per_case(ram + disk),
            "database_file_bytes_per_case": (
                per_case(file_bytes) if file_bytes is not None else None
            ),
            "code_bytes": book.code_size if book is not None else None,
            "coarse_lists": book.nlist if book is not None else None,
            "codebook_version": book.version if book is not None else None,
            "dead_codewords": (
                book.dead_codewords(self.settings.store.dead_code_threshold)
                if book is not None
                else None
            ),
            "distortion": keeper.distortion(),
            "pending_codebook_version": pending.version if pending is not None else None,
            "reindex_remaining": keeper.remaining(),
        }


def _sqlite_file_bytes(url: str) -> int | None:
    """Size of a SQLite store's file and its write-ahead log; None for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database).expanduser()
    if not path.is_file():
        return None
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.is_file() else 0)
