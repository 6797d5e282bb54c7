"""`CaseWriter`: adding, updating, tombstoning and purging cases.

Every write commits to the database first and only then enters the derived index; a write
that encodes vectors checks, before it commits, that the codebooks it encoded with are still
in force (another process may have switched them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from memory_agent.errors import CaseNotFoundError, InvalidInputError, StoreBusyError
from memory_agent.store.codebook import CodeIndex
from memory_agent.store.compression import CodebookMoved
from memory_agent.store.embedder import Vectors
from memory_agent.store.index_sync import lock_vector_writes_first, log_change, prune
from memory_agent.store.models import CaseRow, utcnow
from memory_agent.store.records import Case, NewCase
from memory_agent.store.room import Room
from memory_agent.store.rows import Progress, content_hash, ensure_namespace
from memory_agent.store.validation import check_new_case

T = TypeVar("T")

_UPDATABLE = {"task", "plan", "trajectory", "answer", "reward", "outcome", "source", "meta"}
_CODEBOOK_RETRIES = 5
_CODEBOOKS_KEEP_MOVING = (
    "Other processes kept changing this store's codebooks while this write was being encoded; "
    "nothing was stored. Try again, or run `memory-agent memory reindex` in one process only."
)


class CaseWriter(Room):
    """The store's writes of cases (statistics go through `CaseStats`)."""

    def add_many(
        self,
        cases: Iterable[NewCase],
        *,
        namespace: str | None = None,
        embeddings: npt.ArrayLike | None = None,
        batch_size: int | None = None,
        skip_duplicates: bool = False,
        on_progress: Progress | None = None,
        namespaces: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Store many cases, committing batch by batch; returns the new ids in order.

        Everything is validated before the first write, so bad input stores nothing. Each
        batch is committed before it enters the index, so a crash loses at most the batch in
        flight. With `skip_duplicates`, cases whose task, plan and answer are already stored
        live in the namespace are skipped (their ids are not returned).
        """
        items = list(cases)
        default_ns = self.namespace(namespace)
        targets = [
            self.namespace(ns) if ns is not None else default_ns
            for ns in (namespaces or [None] * len(items))
        ]
        if len(targets) != len(items):
            raise InvalidInputError("namespaces must have one entry per case.")
        checked: list[NewCase] = []
        for position, item in enumerate(items):
            try:
                checked.append(check_new_case(item, self.settings))
            except InvalidInputError as exc:
                prefix = f"case {position + 1} of {len(items)}: " if len(items) > 1 else ""
                raise InvalidInputError(f"{prefix}{exc}") from exc
        vectors_all = None
        if embeddings is not None:
            vectors_all = self.space.prepare(embeddings, len(checked))
        size = batch_size or max(self.settings.store.embed_batch_size, 1)
        new_ids: list[int] = []
        touched: set[str] = set()
        for start in range(0, len(checked), size):
            batch = checked[start : start + size]
            batch_ns = targets[start : start + size]
            hashes = [content_hash(c.task, c.plan, c.answer) for c in batch]
            keep = list(range(len(batch)))
            if skip_duplicates:
                keep = self.without_duplicates(batch_ns, hashes)
            if keep:
                if vectors_all is not None:
                    vectors = vectors_all[start : start + size][keep]
                else:
                    vectors = self.space.embed([batch[i].task for i in keep])
                ids = self.write_batch(
                    [batch[i] for i in keep], [batch_ns[i] for i in keep],
                    [hashes[i] for i in keep], vectors, only_new=skip_duplicates,
                )  # fmt: skip
                new_ids.extend(ids)
                touched.update(batch_ns[i] for i in keep)
            if on_progress is not None:
                on_progress(len(batch))
        if new_ids:
            self.memory._upkeep.after_write()
        for ns in sorted(touched):
            self.memory.enforce_budget(ns, protect=new_ids)
        return new_ids

    def without_duplicates(
        self, namespaces: list[str], hashes: list[str], session: Session | None = None
    ) -> list[int]:
        """Positions of the cases not stored live in their namespace yet (nor earlier in the
        list). Read in `session` if given (under the write lock), else in a new one."""
        if session is None:
            with self.sessions() as own:
                return self.without_duplicates(namespaces, hashes, own)
        query = select(CaseRow.namespace, CaseRow.content_hash).where(
            CaseRow.content_hash.in_(set(hashes)), CaseRow.deleted_at.is_(None)
        )
        existing = {(row[0], row[1]) for row in session.execute(query)}
        keep: list[int] = []
        for i, key in enumerate(zip(namespaces, hashes, strict=True)):
            if key not in existing:
                existing.add(key)
                keep.append(i)
        return keep

    def write_batch(
        self,
        batch: list[NewCase],
        namespaces: list[str],
        hashes: list[str],
        vectors: Vectors,
        *,
        only_new: bool = False,
    ) -> list[int]:
        """Store one batch; with `only_new`, leave out (under the write lock, so two
        processes importing the same file at once never both store a case) the cases whose
        content is already stored live in their namespace."""
        if only_new:
            # The namespaces first, committed on their own: the checked transaction then
            # never waits on another one's uncommitted namespace row while holding the lock.
            with self.sessions.begin() as session:
                for ns in sorted(set(namespaces)):
                    ensure_namespace(session, ns)
        # Under the lock from encoding to indexing: a reindex finishing meanwhile must not
        # make these codes belong to a retired version.
        with self.lock:
            return self.in_force_retrying(
                lambda: self.write_batch_locked(
                    batch, namespaces, hashes, vectors, only_new=only_new
                )
            )

    def in_force_retrying(self, write: Callable[[], T]) -> T:
        """Run a write that encodes vectors and checks, before it commits, that the codebooks
        it encoded with are still in force. If another process changed them, nothing was
        committed: reload the codebooks and run it again (a few times)."""
        for _attempt in range(_CODEBOOK_RETRIES):
            try:
                return write()
            except CodebookMoved:
                self.space.reload_codebooks()
        raise StoreBusyError(_CODEBOOKS_KEEP_MOVING)

    def write_batch_locked(
        self,
        batch: list[NewCase],
        namespaces: list[str],
        hashes: list[str],
        vectors: Vectors,
        *,
        only_new: bool = False,
    ) -> list[int]:
        """One batch's rows, statistics and change-log entries in one transaction, then into
        the index. The caller holds the write lock (`write_batch`)."""
        now = utcnow()
        in_force = self.keeper.in_force()
        with self.space.logged_write() as session:
            if only_new:
                lock_vector_writes_first(session)
                keep = self.without_duplicates(namespaces, hashes, session)
                if not keep:
                    return []
                if len(keep) < len(batch):
                    batch = [batch[i] for i in keep]
                    namespaces = [namespaces[i] for i in keep]
                    hashes = [hashes[i] for i in keep]
                    vectors = vectors[keep]
            rows = [
                {
                    "namespace": ns,
                    "task": case.task,
                    "plan": case.plan,
                    "trajectory": case.trajectory,
                    "answer": case.answer,
                    "reward": case.reward,
                    "outcome": case.outcome,
                    "source": case.source,
                    "meta": case.meta,
                    "content_hash": digest,
                    "created_at": now,
                    "updated_at": now,
                    **columns,
                }
                for case, ns, digest, columns in zip(
                    batch, namespaces, hashes, self.keeper.columns_for(vectors), strict=True
                )
            ]
            for ns in sorted(set(namespaces)):
                ensure_namespace(session, ns)
            ids = list(
                session.scalars(
                    insert(CaseRow).returning(CaseRow.id, sort_by_parameter_order=True),
                    rows,
                )
            )
            self.case_stats.insert(
                session, {i: case.stats for i, case in zip(ids, batch, strict=True)}
            )
            for ns in sorted(set(namespaces)):
                log_change(
                    session, ns, "add",
                    [i for i, n in zip(ids, namespaces, strict=True) if n == ns],
                    self.space.writer,
                )  # fmt: skip
            if ids[-1] % 64 == 0:
                prune(session, self.settings.store.change_log_keep)
            self.keeper.check_in_force(session, in_force)
        # Committed: now the derived index may know about the rows.
        by_ns: dict[str, list[int]] = defaultdict(list)
        for position, ns in enumerate(namespaces):
            by_ns[ns].append(position)
        id_array = np.asarray(ids, dtype=np.int64)
        for ns, positions in by_ns.items():
            index = self.space.index_for(ns)
            if isinstance(index, CodeIndex) and rows[positions[0]].get("code") is not None:
                # The codes just stored are what the index holds: no second encoding.
                codes = b"".join(rows[p]["code"] for p in positions)
                index.add_codes(
                    id_array[positions],
                    np.frombuffer(codes, np.uint8).reshape(len(positions), -1),
                )
            else:
                index.add(id_array[positions], vectors[positions])
        return ids

    def update(self, case_id: int, namespace: str | None = None, **changes: Any) -> Case:
        """Change fields of a case of `namespace` (default: the configured one); a new task
        is re-embedded and re-indexed."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise InvalidInputError(
                f"Cannot update {', '.join(sorted(unknown))}; updatable fields are "
                f"{', '.join(sorted(_UPDATABLE))}."
            )
        current = self.memory.get(case_id, namespace=namespace)
        merged = NewCase(
            task=changes.get("task", current.task),
            plan=changes.get("plan", current.plan),
            trajectory=changes.get("trajectory", current.trajectory),
            answer=changes.get("answer", current.answer),
            reward=changes.get("reward", current.reward),
            outcome=changes.get("outcome", current.outcome if "reward" not in changes else None),
            source=changes.get("source", current.source),
            meta=changes.get("meta", current.meta),
        )
        checked = check_new_case(merged, self.settings)
        vector = None
        if checked.task != current.task:
            vector = self.space.embed([checked.task])
        values: dict[str, Any] = {
            "task": checked.task,
            "plan": checked.plan,
            "trajectory": checked.trajectory,
            "answer": checked.answer,
            "reward": checked.reward,
            "outcome": checked.outcome,
            "source": checked.source,
            "meta": checked.meta,
            "content_hash": content_hash(checked.task, checked.plan, checked.answer),
            "updated_at": utcnow(),
        }

        def write() -> None:
            in_force = self.keeper.in_force()
            if vector is not None:
                values.update(self.keeper.columns_for(vector)[0])
            with self.space.logged_write() as session:
                session.execute(
                    update(CaseRow)
                    .where(CaseRow.id == case_id, CaseRow.namespace == current.namespace)
                    .values(**values)
                )
                if vector is not None:
                    log_change(session, current.namespace, "add", [case_id], self.space.writer)
                    self.keeper.check_in_force(session, in_force)

        with self.lock:
            self.in_force_retrying(write)
            if vector is not None:
                index = self.space.index_for(current.namespace)
                ids = np.asarray([case_id], dtype=np.int64)
                index.remove(ids)
                index.add(ids, vector)
        return self.memory.get(case_id, namespace=current.namespace)

    def tombstone(
        self,
        ids: Sequence[int],
        reason: str,
        merged_into: int | None = None,
        *,
        namespace: str | None,
    ) -> None:
        """Tombstone live cases of `namespace`; a case of another namespace is "not found"
        like a missing id. `namespace=None` only for the store's own eviction, whose ids come
        from one namespace's query."""
        if not ids:
            return
        with self.lock:
            with self.space.logged_write() as session:
                query = select(CaseRow.id, CaseRow.namespace).where(
                    CaseRow.id.in_(ids), CaseRow.deleted_at.is_(None)
                )
                if namespace is not None:
                    query = query.where(CaseRow.namespace == namespace)
                rows = session.execute(query).all()
                found = {case_id for case_id, _ in rows}
                missing = [i for i in ids if i not in found]
                if missing:
                    where = f" in namespace {namespace!r}" if namespace is not None else ""
                    raise CaseNotFoundError(
                        f"No live case with id {missing[0]}{where}; see `memory-agent memory list`."
                    )
                session.execute(
                    update(CaseRow)
                    .where(CaseRow.id.in_(list(found)))
                    .values(
                        deleted_at=utcnow(),
                        deleted_reason=reason,
                        merged_into=merged_into,
                        updated_at=utcnow(),
                    )
                )
                by_ns: dict[str, list[int]] = defaultdict(list)
                for case_id, ns in rows:
                    by_ns[ns].append(case_id)
                for ns, ns_ids in sorted(by_ns.items()):
                    log_change(session, ns, "remove", ns_ids, self.space.writer)
            for ns, ns_ids in by_ns.items():
                if ns in self.space.indexes:
                    self.space.indexes[ns].remove(np.asarray(ns_ids, dtype=np.int64))

    def purge(self, namespace: str | None = None) -> int:
        """Remove tombstoned cases for good; returns how many rows were removed."""
        with self.lock, self.sessions.begin() as session:
            query = delete(CaseRow).where(CaseRow.deleted_at.is_not(None))
            if namespace is not None:
                query = query.where(CaseRow.namespace == self.namespace(namespace))
            result = session.execute(query)
            return int(getattr(result, "rowcount", 0) or 0)
