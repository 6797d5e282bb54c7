"""`CaseMemory`: the persistent case store with its vector index."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.errors import (
    CaseNotFoundError,
    EmbedderError,
    ImportFileError,
    InvalidInputError,
    StoreBusyError,
    UnknownNamespaceError,
)
from memory_agent.settings import Settings
from memory_agent.store.case_stats import CaseStats, combine
from memory_agent.store.codebook import CodeIndex
from memory_agent.store.compression import CodebookMoved, Compression, ReindexWorker
from memory_agent.store.database import create_store_engine, insert_if_absent, redact
from memory_agent.store.embedder import Embedder, Vectors, embedder_from_settings, normalise
from memory_agent.store.index import Ids, VectorIndex, check_vectors, make_index
from memory_agent.store.index_sync import (
    changes_after,
    log_bounds,
    log_change,
    prune,
    reindex_job,
)
from memory_agent.store.models import (
    CaseRow,
    NamespaceRow,
    StoreMetaRow,
    utcnow,
)
from memory_agent.store.policy_state import PolicyStates
from memory_agent.store.records import (
    Candidate,
    Case,
    ImportReport,
    Merge,
    NewCase,
    SearchHit,
    StageStats,
)
from memory_agent.store.transfer import ImportFormat, read_case_file
from memory_agent.store.validation import check_namespace, check_new_case, check_text

Progress = Callable[[int], None]
"""Called with the number of items just finished (for progress bars)."""

_UPDATABLE = {"task", "plan", "trajectory", "answer", "reward", "outcome", "source", "meta"}
_COLUMN_FILTERS = {"outcome", "source", "min_reward", "max_reward"}


def content_hash(task: str, plan: str | None, answer: str | None) -> str:
    joined = "\x00".join((task, plan or "", answer or ""))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _to_case(row: CaseRow, stats: Mapping[str, StageStats] | None = None) -> Case:
    return Case(
        id=row.id,
        namespace=row.namespace,
        task=row.task,
        plan=row.plan,
        trajectory=row.trajectory,
        answer=row.answer,
        reward=row.reward,
        outcome=row.outcome,
        source=row.source,
        meta=dict(row.meta or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        stats=dict(stats or {}),
        codebook_version=row.codebook_version,
    )


T = TypeVar("T")

StoredVector = tuple[int, bytes | None, bytes | None, int | None]
"""A case's searchable part as stored: (id, code, raw float32 vector, codebook version)."""

_CODEBOOK_RETRIES = 5
_CODEBOOKS_KEEP_MOVING = (
    "Other processes kept changing this store's codebooks while this write was being encoded; "
    "nothing was stored. Try again, or run `memory-agent memory reindex` in one process only."
)


class CaseMemory:
    """Episodic cases in a SQL database, searchable by task similarity.

    The database is the system of record; each namespace's vector index is derived from the
    vectors stored there, rebuilt at open and kept in step with every write. Text is embedded
    lazily, so opening a store to list or export never loads a model.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        database_url: str | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.url = database_url or self.settings.resolved_database_url()
        self.engine = create_store_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._embedder = embedder
        self._lock = threading.RLock()
        self._indexes: dict[str, VectorIndex] = {}
        self._dim: int | None = None
        self._embedder_name: str | None = None
        self._compression = Compression(self.settings, self._sessions)
        self.case_stats = CaseStats(self._sessions)
        """The per-case, per-stage value statistics: their one reader and writer."""
        self.policy_states = PolicyStates(self._sessions)
        """The policies' saved state (networks, task histories)."""
        self._worker: ReindexWorker | None = None
        # Which CaseMemory wrote a change (it applied it already) and the last change of any
        # writer this one's indexes reflect (store/index_sync.py).
        self._writer = uuid.uuid4().hex
        self._seen_change = 0
        self._synced_at = 0.0
        self._load_vector_space()
        self._rebuild_indexes()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()  # between batches: the job resumes at the next open
            self._worker = None
        self._compression.flush()
        self.engine.dispose()

    def __enter__(self) -> CaseMemory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = embedder_from_settings(self.settings)
        return self._embedder

    @property
    def dim(self) -> int | None:
        """The vector size of this store, once the first vector is stored."""
        return self._dim

    def _load_vector_space(self) -> None:
        with self._sessions() as session:
            row = session.get(StoreMetaRow, "vector_space")
            if row is not None:
                self._dim = int(row.value["dim"])
                self._embedder_name = row.value.get("embedder")

    def _claim_vector_space(self, dim: int, embedder_name: str | None) -> None:
        """Record (or check) the dimension and model every vector of this store comes from."""
        if self._dim is None:
            with self._lock, self._sessions.begin() as session:
                # Another process may claim it first (with another model, even): keep theirs
                # and check against it, never overwrite it.
                insert_if_absent(
                    session,
                    StoreMetaRow.__table__,
                    {"key": "vector_space", "value": {"dim": dim, "embedder": embedder_name}},
                )
            self._load_vector_space()
        self._check_vector_space(dim, embedder_name)

    def _check_vector_space(self, dim: int, embedder_name: str | None) -> None:
        if dim != self._dim:
            raise EmbedderError(
                f"This store holds {self._dim}-dimensional vectors from "
                f"{self._embedder_name or 'an external embedder'}, but got {dim}-dimensional "
                "ones. Use the store's embedder (MEMORY_AGENT_EMBEDDER_MODEL), or a new store "
                "(MEMORY_AGENT_HOME) and move cases with `memory-agent memory export`/`import`."
            )
        if embedder_name and self._embedder_name and embedder_name != self._embedder_name:
            raise EmbedderError(
                f"This store's vectors come from {self._embedder_name}, but the configured "
                f"embedder is {embedder_name}. Vectors of different models are not comparable:"
                " configure the same model, or use a new store and re-import the cases."
            )

    def _reload_codebooks(self) -> None:
        """Take the codebooks in force from the database and rebuild the indexes on them."""
        keeper = self._compression
        keeper.flush()
        keeper.load()
        self._load_vector_space()
        self._rebuild_indexes()

    def _rebuild_indexes(self) -> None:
        """Build every namespace's index from the stored vectors or codes (no re-embedding).

        Once a codebook is active every live case is searched through its code of the active
        version; a pending version's codes wait in `next_code` until reindex finishes.
        """
        # The log position first: a change committed while the cases load is applied again at
        # the next sync, which is harmless (an add replaces, a remove of an absent id is a
        # no-op); one read after the load could be missed for good.
        with self._sessions() as session:
            self._seen_change = log_bounds(session)[1]
        self._synced_at = time.monotonic()
        if self._dim is None:
            self._indexes = {}
            return
        rows: dict[str, list[StoredVector]] = defaultdict(list)
        query = (
            select(
                CaseRow.namespace,
                CaseRow.id,
                CaseRow.code,
                CaseRow.embedding,
                CaseRow.codebook_version,
            )
            .where(
                CaseRow.deleted_at.is_(None),
                or_(CaseRow.embedding.is_not(None), CaseRow.code.is_not(None)),
            )
            .order_by(CaseRow.id)
            .execution_options(yield_per=50_000)
        )
        if self._compression.active is None:
            query = query.where(CaseRow.embedding.is_not(None))
        with self.engine.connect() as conn:
            for namespace, case_id, code, embedding, version in conn.execute(query):
                rows[namespace].append((case_id, code, embedding, version))
        indexes: dict[str, VectorIndex] = {}
        for namespace in sorted(rows):
            index = self._new_index(self._dim)
            self._index_rows(index, rows[namespace])
            indexes[namespace] = index
        self._indexes = indexes

    def _index_rows(self, index: VectorIndex, rows: Sequence[StoredVector]) -> None:
        """Add stored rows (id, code, raw vector, codebook version) to an index.

        Codes of the active version go in as they are. A raw vector (all there is before the
        switch) is encoded by the index. A code of another version (left by an older
        program, or by a writer that raced a finishing re-encode) is decoded with its own
        codebook first: one index never mixes versions.
        """
        assert self._dim is not None
        book = self._compression.active if isinstance(index, CodeIndex) else None
        coded_ids: list[int] = []
        codes: list[bytes] = []
        raw_ids: list[int] = []
        raw_blobs: list[bytes] = []
        foreign: dict[int, tuple[list[int], list[bytes]]] = defaultdict(lambda: ([], []))
        for case_id, code, embedding, version in rows:
            if code is not None and book is not None and version == book.version:
                coded_ids.append(case_id)
                codes.append(code)
            elif embedding is not None:
                raw_ids.append(case_id)
                raw_blobs.append(embedding)
            elif code is not None and version is not None:
                foreign[version][0].append(case_id)
                foreign[version][1].append(code)
        # One buffer for all raw vectors (a store that never switches may hold millions).
        raw = [np.frombuffer(b"".join(raw_blobs), np.float32).reshape(len(raw_ids), self._dim)]
        for version, (ids, blobs) in sorted(foreign.items()):
            own = self._compression.book(version)
            if own is None:
                continue  # its codebook is gone: nothing to decode with (never deleted here)
            raw_ids.extend(ids)
            stacked = np.frombuffer(b"".join(blobs), np.uint8).reshape(len(ids), -1)
            raw.append(own.decode(stacked))
        if coded_ids:
            assert isinstance(index, CodeIndex)
            stacked = np.frombuffer(b"".join(codes), np.uint8).reshape(len(coded_ids), -1)
            index.add_codes(np.asarray(coded_ids, dtype=np.int64), stacked)
        if raw_ids:
            index.add(
                np.asarray(raw_ids, dtype=np.int64),
                np.concatenate(raw).astype(np.float32, copy=False),
            )

    def sync(self, *, force: bool = False) -> None:
        """Bring the in-memory indexes up to date with other processes' writes.

        Searches call it; it looks at the database at most every
        `index_sync_interval` seconds unless forced. This process's own writes are in its
        indexes as soon as they commit.
        """
        now = time.monotonic()
        if not force and now - self._synced_at < self.settings.index_sync_interval:
            return
        with self._lock:
            self._synced_at = now
            keeper = self._compression
            with self._sessions() as session:
                low, high = log_bounds(session)
                moved = keeper.moved(session)
            if moved:
                # Another process trained or finished a codebook: codes of the old version
                # may be gone, so start again from what the database holds.
                self._reload_codebooks()
                return
            if high == self._seen_change:
                return
            if not low <= self._seen_change + 1 <= high + 1:
                # The log was pruned past what this process has seen.
                self._load_vector_space()
                self._rebuild_indexes()
                return
            with self._sessions() as session:
                changes = changes_after(session, self._seen_change, high)
            if self._dim is None:
                self._load_vector_space()
            self._apply(changes)
            self._seen_change = high

    def _apply(self, changes: Sequence[Any]) -> None:
        """Other writers' changes, in order, to the in-memory indexes."""
        for change in changes:
            if change.writer == self._writer or self._dim is None:
                continue
            index = self._index_for(change.namespace)
            index.remove(change.case_ids)  # an add replaces: the case may be indexed already
            if change.op != "add":
                continue
            with self._sessions() as session:
                rows = session.execute(
                    select(CaseRow.id, CaseRow.code, CaseRow.embedding, CaseRow.codebook_version)
                    .where(CaseRow.id.in_(change.case_ids.tolist()), CaseRow.deleted_at.is_(None))
                    .order_by(CaseRow.id)
                ).all()
            self._index_rows(index, [(r[0], r[1], r[2], r[3]) for r in rows])

    def _new_index(self, dim: int) -> VectorIndex:
        book = self._compression.active
        if book is None:
            return make_index(self.settings.index_kind, dim)
        return CodeIndex(book, self.settings.ivf_nprobe)

    def _index_for(self, namespace: str) -> VectorIndex:
        index = self._indexes.get(namespace)
        if index is None:
            assert self._dim is not None
            index = self._new_index(self._dim)
            self._indexes[namespace] = index
        return index

    # ------------------------------------------------------------------ namespaces

    def namespaces(self) -> list[str]:
        with self._sessions() as session:
            return list(session.scalars(select(NamespaceRow.name).order_by(NamespaceRow.name)))

    def _namespace(self, namespace: str | None) -> str:
        return check_namespace(namespace if namespace is not None else self.settings.namespace)

    def _require_namespace(self, session: Session, namespace: str) -> NamespaceRow:
        row = session.get(NamespaceRow, namespace)
        if row is None:
            known = list(session.scalars(select(NamespaceRow.name).order_by(NamespaceRow.name)))
            hint = f"Known namespaces: {', '.join(known)}." if known else "The store is empty."
            raise UnknownNamespaceError(
                f"Namespace {namespace!r} does not exist. {hint} "
                "Add a case to it first, or pick one with --namespace."
            )
        return row

    def _ensure_namespace(self, session: Session, namespace: str) -> NamespaceRow:
        row = session.get(NamespaceRow, namespace)
        if row is None:
            # Two processes writing a new namespace's first case at once both get here.
            insert_if_absent(
                session, NamespaceRow.__table__, {"name": namespace, "created_at": utcnow()}
            )
            row = session.get(NamespaceRow, namespace)
            assert row is not None
        return row

    # ------------------------------------------------------------------ writing

    def _embed_tasks(self, texts: Sequence[str]) -> Vectors:
        embedder = self.embedder
        vectors = embedder.embed(texts)
        self._claim_vector_space(int(vectors.shape[1]), embedder.name)
        return vectors

    def _prepare_vectors(self, embeddings: npt.ArrayLike, count: int) -> Vectors:
        array = np.asarray(embeddings, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != count:
            raise InvalidInputError(
                f"embeddings must be a 2-D array with one row per case ({count} rows); "
                f"got shape {array.shape}."
            )
        dim = self._dim if self._dim is not None else int(array.shape[1])
        vectors = normalise(check_vectors(array, dim, "embeddings"))
        self._claim_vector_space(dim, None)
        return vectors

    def add(
        self,
        task: str,
        *,
        plan: str | None = None,
        trajectory: Any = None,
        answer: str | None = None,
        reward: float | None = None,
        outcome: str | None = None,
        source: str = "api",
        meta: dict[str, Any] | None = None,
        namespace: str | None = None,
        embedding: npt.ArrayLike | None = None,
    ) -> Case:
        """Store one case and return it."""
        new = NewCase(
            task=task,
            plan=plan,
            trajectory=trajectory,
            answer=answer,
            reward=reward,
            outcome=outcome,
            source=source,
            meta=meta or {},
        )
        vectors = None if embedding is None else np.asarray(embedding, dtype=np.float32)[None, :]
        ids = self.add_many([new], namespace=namespace, embeddings=vectors)
        return self.get(ids[0])

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
        default_ns = self._namespace(namespace)
        targets = [
            self._namespace(ns) if ns is not None else default_ns
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
            vectors_all = self._prepare_vectors(embeddings, len(checked))
        size = batch_size or max(self.settings.embed_batch_size, 1)
        new_ids: list[int] = []
        touched: set[str] = set()
        for start in range(0, len(checked), size):
            batch = checked[start : start + size]
            batch_ns = targets[start : start + size]
            hashes = [content_hash(c.task, c.plan, c.answer) for c in batch]
            keep = list(range(len(batch)))
            if skip_duplicates:
                keep = self._without_duplicates(batch_ns, hashes)
            if keep:
                if vectors_all is not None:
                    vectors = vectors_all[start : start + size][keep]
                else:
                    vectors = self._embed_tasks([batch[i].task for i in keep])
                ids = self._write_batch(
                    [batch[i] for i in keep], [batch_ns[i] for i in keep],
                    [hashes[i] for i in keep], vectors,
                )  # fmt: skip
                new_ids.extend(ids)
                touched.update(batch_ns[i] for i in keep)
            if on_progress is not None:
                on_progress(len(batch))
        if new_ids:
            self._after_write()
        for ns in sorted(touched):
            self.enforce_budget(ns, protect=new_ids)
        return new_ids

    def _without_duplicates(self, namespaces: list[str], hashes: list[str]) -> list[int]:
        with self._sessions() as session:
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

    def _write_batch(
        self, batch: list[NewCase], namespaces: list[str], hashes: list[str], vectors: Vectors
    ) -> list[int]:
        # Under the lock from encoding to indexing: a reindex finishing meanwhile must not
        # make these codes belong to a retired version.
        with self._lock:
            return self._in_force_retrying(
                lambda: self._write_batch_locked(batch, namespaces, hashes, vectors)
            )

    def _in_force_retrying(self, write: Callable[[], T]) -> T:
        """Run a write that encodes vectors and checks, before it commits, that the codebooks
        it encoded with are still in force. If another process changed them, nothing was
        committed: reload the codebooks and run it again (a few times)."""
        for _attempt in range(_CODEBOOK_RETRIES):
            try:
                return write()
            except CodebookMoved:
                self._reload_codebooks()
        raise StoreBusyError(_CODEBOOKS_KEEP_MOVING)

    def _write_batch_locked(
        self, batch: list[NewCase], namespaces: list[str], hashes: list[str], vectors: Vectors
    ) -> list[int]:
        now = utcnow()
        in_force = self._compression.in_force()
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
                batch, namespaces, hashes, self._compression.columns_for(vectors), strict=True
            )
        ]
        with self._lock:
            with self._sessions.begin() as session:
                for ns in sorted(set(namespaces)):
                    self._ensure_namespace(session, ns)
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
                        self._writer,
                    )  # fmt: skip
                if ids[-1] % 64 == 0:
                    prune(session, self.settings.change_log_keep)
                self._compression.check_in_force(session, in_force)
            # Committed: now the derived index may know about the rows.
            by_ns: dict[str, list[int]] = defaultdict(list)
            for position, ns in enumerate(namespaces):
                by_ns[ns].append(position)
            id_array = np.asarray(ids, dtype=np.int64)
            for ns, positions in by_ns.items():
                index = self._index_for(ns)
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

    def update(self, case_id: int, **changes: Any) -> Case:
        """Change fields of a case; a new task is re-embedded and re-indexed."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise InvalidInputError(
                f"Cannot update {', '.join(sorted(unknown))}; updatable fields are "
                f"{', '.join(sorted(_UPDATABLE))}."
            )
        current = self.get(case_id)
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
            vector = self._embed_tasks([checked.task])
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
            in_force = self._compression.in_force()
            if vector is not None:
                values.update(self._compression.columns_for(vector)[0])
            with self._sessions.begin() as session:
                session.execute(update(CaseRow).where(CaseRow.id == case_id).values(**values))
                if vector is not None:
                    log_change(session, current.namespace, "add", [case_id], self._writer)
                    self._compression.check_in_force(session, in_force)

        with self._lock:
            self._in_force_retrying(write)
            if vector is not None:
                index = self._index_for(current.namespace)
                ids = np.asarray([case_id], dtype=np.int64)
                index.remove(ids)
                index.add(ids, vector)
        return self.get(case_id)

    def delete(self, case_id: int, *, reason: str = "deleted") -> None:
        """Tombstone a case: it leaves search and listings but stays in the database."""
        self._tombstone([case_id], reason)

    def _tombstone(self, ids: Sequence[int], reason: str, merged_into: int | None = None) -> None:
        if not ids:
            return
        with self._lock:
            with self._sessions.begin() as session:
                rows = session.execute(
                    select(CaseRow.id, CaseRow.namespace).where(
                        CaseRow.id.in_(ids), CaseRow.deleted_at.is_(None)
                    )
                ).all()
                found = {case_id for case_id, _ in rows}
                missing = [i for i in ids if i not in found]
                if missing:
                    raise CaseNotFoundError(
                        f"No live case with id {missing[0]}; see `memory-agent memory list`."
                    )
                session.execute(
                    update(CaseRow)
                    .where(CaseRow.id.in_(ids))
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
                    log_change(session, ns, "remove", ns_ids, self._writer)
            for ns, ns_ids in by_ns.items():
                if ns in self._indexes:
                    self._indexes[ns].remove(np.asarray(ns_ids, dtype=np.int64))

    def purge(self, namespace: str | None = None) -> int:
        """Remove tombstoned cases for good; returns how many rows were removed."""
        with self._lock, self._sessions.begin() as session:
            query = delete(CaseRow).where(CaseRow.deleted_at.is_not(None))
            if namespace is not None:
                query = query.where(CaseRow.namespace == self._namespace(namespace))
            result = session.execute(query)
            return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------------ reading

    def get(self, case_id: int, *, include_deleted: bool = False) -> Case:
        """The case with this id; CaseNotFoundError if there is none (or it was deleted)."""
        with self._sessions() as session:
            row = session.get(CaseRow, case_id)
            if row is None or (row.deleted_at is not None and not include_deleted):
                raise CaseNotFoundError(
                    f"No case with id {case_id}"
                    + (" (it was deleted)" if row is not None else "")
                    + "; see `memory-agent memory list`."
                )
            return _to_case(row, self.case_stats.read(session, [case_id]).get(case_id))

    def get_many(self, ids: Sequence[int]) -> list[Case]:
        """Live cases for these ids, in the order given (unknown ids are left out)."""
        if not ids:
            return []
        with self._sessions() as session:
            rows = {
                row.id: row
                for row in session.scalars(
                    select(CaseRow).where(CaseRow.id.in_(ids), CaseRow.deleted_at.is_(None))
                )
            }
            stats = self.case_stats.read(session, list(rows))
            return [_to_case(rows[i], stats.get(i)) for i in ids if i in rows]

    def vectors(self, ids: Sequence[int]) -> Vectors:
        """The stored vectors of these cases, one row per id in order (zeros if unknown).

        Once a case is stored as a code, its vector is the code decoded: an approximation of
        the embedding whose error is the codebook's distortion.
        """
        out = np.zeros((len(ids), self._dim or 0), dtype=np.float32)
        if not ids or self._dim is None:
            return out
        with self._sessions() as session:
            query = select(
                CaseRow.id, CaseRow.embedding, CaseRow.code, CaseRow.codebook_version
            ).where(CaseRow.id.in_(ids))
            rows = {r[0]: r[1:] for r in session.execute(query).all()}
        by_version: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for position, case_id in enumerate(ids):
            found = rows.get(case_id)
            if found is None:
                continue
            raw, code, version = found
            if raw is not None:
                out[position] = np.frombuffer(raw, dtype=np.float32)
            elif code is not None and version is not None:
                by_version[version].append((position, code))
        for version, items in by_version.items():
            book = self._compression.book(version)
            if book is None:
                continue
            codes = np.frombuffer(b"".join(c for _, c in items), np.uint8).reshape(len(items), -1)
            out[[p for p, _ in items]] = book.decode(codes)
        return out

    def list_cases(
        self, namespace: str | None = None, *, limit: int = 20, offset: int = 0
    ) -> list[Case]:
        """Live cases of a namespace, newest first."""
        ns = self._namespace(namespace)
        with self._sessions() as session:
            self._require_namespace(session, ns)
            rows = list(
                session.scalars(
                    select(CaseRow)
                    .where(CaseRow.namespace == ns, CaseRow.deleted_at.is_(None))
                    .order_by(CaseRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            stats = self.case_stats.read(session, [r.id for r in rows])
            return [_to_case(r, stats.get(r.id)) for r in rows]

    def count(self, namespace: str | None = None) -> int:
        query = select(func.count()).select_from(CaseRow).where(CaseRow.deleted_at.is_(None))
        if namespace is not None:
            query = query.where(CaseRow.namespace == self._namespace(namespace))
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    def _filter_clause(self, filters: Mapping[str, Any]) -> list[Any]:
        clauses: list[Any] = []
        for key, value in filters.items():
            if key == "min_reward":
                clauses.append(CaseRow.reward >= float(value))
            elif key == "max_reward":
                clauses.append(CaseRow.reward <= float(value))
            elif key in ("outcome", "source"):
                clauses.append(getattr(CaseRow, key) == value)
            elif isinstance(value, bool):
                clauses.append(CaseRow.meta[key].as_boolean() == value)
            elif isinstance(value, int | float):
                clauses.append(CaseRow.meta[key].as_float() == float(value))
            elif isinstance(value, str):
                clauses.append(CaseRow.meta[key].as_string() == value)
            else:
                raise InvalidInputError(
                    f"Filter {key!r} has a value of type {type(value).__name__}; filters take "
                    f"strings, numbers or booleans ({', '.join(sorted(_COLUMN_FILTERS))} match "
                    "case fields, any other key matches a meta field)."
                )
        return clauses

    def nearest(
        self,
        vectors: npt.ArrayLike,
        k: int,
        *,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """Raw top-k (scores, ids) for query vectors; ids are -1 where fewer than k exist."""
        ns = self._namespace(namespace)
        self.sync()
        allowed = None
        if filters or ns not in self._indexes:
            # A namespace with an index exists (namespaces are never dropped): no round trip.
            with self._sessions() as session:
                self._require_namespace(session, ns)
        if filters:
            with self._sessions() as session:
                allowed = np.fromiter(
                    session.scalars(
                        select(CaseRow.id).where(
                            CaseRow.namespace == ns,
                            CaseRow.deleted_at.is_(None),
                            and_(*self._filter_clause(filters)),
                        )
                    ),
                    dtype=np.int64,
                )
        if self._dim is None:
            n = np.asarray(vectors).reshape(-1, np.asarray(vectors).shape[-1]).shape[0]
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        queries = normalise(check_vectors(vectors, self._dim, "query vectors"))
        with self._lock:
            return self._index_for(ns).search(queries, k, allowed)

    def search(
        self,
        query: str | npt.ArrayLike,
        k: int = 5,
        *,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """Cases whose task is most similar to `query` (text or vector), best first."""
        if k < 1:
            raise InvalidInputError(f"k must be at least 1; got {k}.")
        ns = self._namespace(namespace)
        with self._sessions() as session:
            self._require_namespace(session, ns)
        if isinstance(query, str):
            text = check_text(
                query, "query", self.settings.max_task_chars, required=True,
                setting="MEMORY_AGENT_MAX_TASK_CHARS",
            )  # fmt: skip
            assert text is not None
            if self._dim is None:
                return []
            vector = self._embed_tasks([text])
        else:
            vector = np.asarray(query, dtype=np.float32)
        scores, ids = self.nearest(vector, k, namespace=ns, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        cases = {c.id: c for c in self.get_many([i for i, _ in found])}
        return [SearchHit(cases[i], score) for i, score in found if i in cases]

    def candidates(
        self,
        state: npt.ArrayLike,
        *,
        namespace: str | None = None,
        size: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Candidate]:
        """The shortlist for `state` as a policy sees it (best similarity first).

        `filters` (as in `nearest`) restricts it to the cases the caller can use, e.g.
        `{"outcome": "success"}` for a planner that is only ever shown successes: a policy
        must choose among the cases that will reach the planner, not fill its slots with
        ones that will be dropped. Reads only what a policy needs (reward, per-stage stats,
        the vector) in few small queries: this runs once per decision, so it must stay cheap.
        """
        n = size or self.settings.shortlist_size
        scores, ids = self.nearest(state, n, namespace=namespace, filters=filters)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if not found:
            return []
        wanted = [i for i, _ in found]
        with self._sessions() as session:
            live = select(CaseRow.id, CaseRow.reward).where(
                CaseRow.id.in_(wanted), CaseRow.deleted_at.is_(None)
            )
            rewards: dict[int, float | None] = {row[0]: row[1] for row in session.execute(live)}
            stats = self.case_stats.read(session, wanted)
        # Once a case is kept only as a code, its vector is the decoded code.
        vectors = self.vectors(wanted)
        return [
            Candidate(case_id=i, similarity=s, embedding=vectors[position], reward=rewards[i],
                      stats=dict(stats.get(i, {})))
            for position, (i, s) in enumerate(found)
            if i in rewards
        ]  # fmt: skip

    # ------------------------------------------------------------------ rewriting

    def merge(self, keep_id: int, drop_ids: Sequence[int]) -> Merge:
        """Fold near-duplicate cases into `keep_id`, summing their statistics.

        Per stage, visits and reward sums add up and Q becomes the visit-weighted mean; the
        kept case's reward becomes the mean of the known rewards. Dropped cases are
        tombstoned with `merged_into` pointing at the kept one.
        """
        drop = [int(i) for i in dict.fromkeys(drop_ids) if int(i) != keep_id]
        if not drop:
            return Merge(keep_id, ())
        keep = self.get(keep_id)
        others = self.get_many(drop)
        if len(others) != len(drop):
            missing = sorted(set(drop) - {c.id for c in others})
            raise CaseNotFoundError(f"No live case with id {missing[0]} to merge.")
        foreign = [c.id for c in others if c.namespace != keep.namespace]
        if foreign:
            raise InvalidInputError(
                f"Case {foreign[0]} is in another namespace than case {keep_id}; only cases of "
                "one namespace can be merged."
            )
        group = [keep, *others]
        stats: dict[str, StageStats] = {}
        for stage in {s for c in group for s in c.stats}:
            stats[stage] = combine([c.stats[stage] for c in group if stage in c.stats])
        rewards = [c.reward for c in group if c.reward is not None]
        reward = sum(rewards) / len(rewards) if rewards else None
        meta = dict(keep.meta)
        meta["merged_from"] = sorted({*keep.meta.get("merged_from", []), *drop})
        now = utcnow()
        with self._lock:
            with self._sessions.begin() as session:
                session.execute(
                    update(CaseRow)
                    .where(CaseRow.id == keep_id)
                    .values(reward=reward, meta=meta, updated_at=now)
                )
                self.case_stats.replace(session, keep_id, stats)
            self._tombstone(drop, "merged", merged_into=keep_id)
        return Merge(keep_id, tuple(drop))

    def find_duplicates(
        self, namespace: str | None = None, *, threshold: float = 0.95
    ) -> list[list[int]]:
        """Groups of live cases whose tasks are at least `threshold` cosine-similar."""
        ns = self._namespace(namespace)
        with self._sessions() as session:
            self._require_namespace(session, ns)
            live = list(
                session.scalars(
                    select(CaseRow.id).where(
                        CaseRow.namespace == ns,
                        CaseRow.deleted_at.is_(None),
                        or_(CaseRow.embedding.is_not(None), CaseRow.code.is_not(None)),
                    )
                )
            )
        if not live or self._dim is None:
            return []
        ids = np.asarray(live, dtype=np.int64)
        vectors = self.vectors(live)
        parent = {int(i): int(i) for i in ids}

        def root(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        neighbours = min(len(ids), 32)
        self.sync(force=True)
        with self._lock:
            _, found = self._index_for(ns).search(vectors, neighbours)
        # Candidates come from the index; the similarity that decides is the cosine of the two
        # stored vectors (decoded codes are not unit length, so raw index scores would not do).
        unit = normalise(vectors)
        position = {int(i): p for p, i in enumerate(ids)}
        for row, (row_id, row_found) in enumerate(zip(ids, found, strict=True)):
            for other in row_found:
                other_at = position.get(int(other))
                if other_at is None or other == row_id:
                    continue
                if float(unit[row] @ unit[other_at]) >= threshold:
                    parent[root(int(row_id))] = root(int(other))
        groups: dict[int, list[int]] = defaultdict(list)
        for case_id in parent:
            groups[root(case_id)].append(case_id)
        return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])

    def dedupe(self, namespace: str | None = None, *, threshold: float = 0.95) -> list[Merge]:
        """Merge each group of near-duplicates into its best case (reward, visits, age)."""
        merges = []
        for group in self.find_duplicates(namespace, threshold=threshold):
            cases = self.get_many(group)

            def rank(case: Case) -> tuple[float, int, int]:
                visits = sum(s.visits for s in case.stats.values())
                return (case.reward if case.reward is not None else -2.0, visits, -case.id)

            best = max(cases, key=rank)
            merges.append(self.merge(best.id, [c.id for c in cases if c.id != best.id]))
        return merges

    def set_budget(self, namespace: str | None, max_cases: int | None) -> list[int]:
        """Set a namespace's case budget (None: the settings' default); evicts at once."""
        ns = self._namespace(namespace)
        if max_cases is not None and max_cases < 1:
            raise InvalidInputError("A budget must be at least 1 case (or None for no budget).")
        with self._sessions.begin() as session:
            self._require_namespace(session, ns).max_cases = max_cases
        return self.enforce_budget(ns)

    def budget(self, namespace: str | None = None) -> int | None:
        ns = self._namespace(namespace)
        with self._sessions() as session:
            row = self._require_namespace(session, ns)
            return (
                row.max_cases
                if row.max_cases is not None
                else self.settings.max_cases_per_namespace
            )

    def _eviction_order(self, namespace: str) -> Select[int]:
        # The lowest value first: a case's learned value (its best stage, once the policy
        # has shown it), else its own reward, else 0; then the oldest.
        learned = self.case_stats.learned_values()
        return (
            select(CaseRow.id)
            .outerjoin(learned, learned.c.case_id == CaseRow.id)
            .where(CaseRow.namespace == namespace, CaseRow.deleted_at.is_(None))
            .order_by(
                func.coalesce(learned.c.q, CaseRow.reward, 0.0), CaseRow.created_at, CaseRow.id
            )
        )

    def enforce_budget(
        self, namespace: str | None = None, *, protect: Sequence[int] = ()
    ) -> list[int]:
        """Evict the lowest-value cases until the namespace fits its budget.

        Cases in `protect` (those just added) go last: a new case has had no chance to prove
        its value yet, so older cases are evicted before it.
        """
        ns = self._namespace(namespace)
        limit = self.budget(ns)
        if limit is None:
            return []
        excess = self.count(ns) - limit
        if excess <= 0:
            return []
        protected = set(protect)
        with self._sessions() as session:
            ranked = list(session.scalars(self._eviction_order(ns)))
        victims = [i for i in ranked if i not in protected][:excess]
        victims += [i for i in ranked if i in protected][: excess - len(victims)]
        self._tombstone(victims, "evicted")
        return victims

    # ------------------------------------------------------------------ transfer

    def export(self, target: Path | IO[str], namespace: str | None = None) -> int:
        """Write live cases as JSONL (all namespaces unless one is named); returns the count."""
        query = select(CaseRow).where(CaseRow.deleted_at.is_(None)).order_by(CaseRow.id)
        if namespace is not None:
            ns = self._namespace(namespace)
            with self._sessions() as session:
                self._require_namespace(session, ns)
            query = query.where(CaseRow.namespace == ns)

        def write(handle: IO[str]) -> int:
            count = 0
            with self._sessions() as session:
                for chunk in session.scalars(query.execution_options(yield_per=1000)).partitions():
                    stats = self.case_stats.read(session, [r.id for r in chunk])
                    for row in chunk:
                        record = _to_case(row, stats.get(row.id)).to_json()
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                        count += 1
            return count

        if isinstance(target, Path):
            tmp = target.with_name(target.name + ".partial")
            with tmp.open("w", encoding="utf-8") as handle:
                count = write(handle)
            tmp.replace(target)  # never leave a half-written export under the real name
            return count
        return write(target)

    def import_file(
        self,
        path: Path,
        *,
        fmt: ImportFormat = "jsonl",
        namespace: str | None = None,
        skip_invalid: bool = False,
        on_progress: Progress | None = None,
    ) -> ImportReport:
        """Import a JSONL case file (our export format, or a Memento case bank).

        All-or-nothing by default: every line is checked before anything is written, and any
        bad line aborts the import with each problem listed by line number. With
        `skip_invalid`, good lines are imported and bad ones reported. Cases already stored
        (same task, plan and answer in the namespace) are skipped, so re-running an import
        after a crash or a fix adds only what is missing.
        """
        report = ImportReport()
        good: list[NewCase] = []
        targets: list[str | None] = []
        for number, case, ns, error in read_case_file(path, fmt):
            if case is not None:
                try:
                    case = check_new_case(case, self.settings)
                    target = namespace if namespace is not None else ns
                    if target is not None:
                        check_namespace(target)
                except InvalidInputError as exc:
                    error = str(exc)
                else:
                    good.append(case)
                    targets.append(target)
                    continue
            report.invalid.append((number, error or "invalid"))
        if report.invalid and not skip_invalid:
            shown = "; ".join(f"line {n}: {msg}" for n, msg in report.invalid[:5])
            more = f" (and {len(report.invalid) - 5} more)" if len(report.invalid) > 5 else ""
            raise ImportFileError(
                f"{path} has {len(report.invalid)} bad line(s), nothing was imported: "
                f"{shown}{more}. Fix them, or pass --skip-invalid to import the good lines.",
                report.invalid,
            )
        before = {ns: self._count_if_exists(ns) for ns in set(targets) | {namespace}}
        ids = self.add_many(
            good,
            namespace=namespace,
            namespaces=targets,
            skip_duplicates=True,
            on_progress=on_progress,
        )
        report.added = len(ids)
        report.skipped_duplicates = len(good) - len(ids)
        after = sum(self._count_if_exists(ns) for ns in before)
        report.evicted = max(0, sum(before.values()) + report.added - after)
        return report

    def _count_if_exists(self, namespace: str | None) -> int:
        ns = self._namespace(namespace)
        return self.count(ns)

    # ------------------------------------------------------------------ stats

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Counts and sizes of the store (or of one namespace).

        Sizes are per live case and per resource, since disk and RAM are budgeted apart:
        `bytes_per_case` is what the vector memory keeps at rest (the codes, or float32
        vectors before the first codebook, in the database, plus the codebooks and the
        reservoir of raw vectors kept for codebook upkeep, amortised over the cases);
        `ram_bytes_per_case` is what a process holds to search it (the index's codes and
        int64 ids, plus the codebooks and the reservoir); `total_bytes_per_case` is both.
        """
        with self._sessions() as session:
            base = select(CaseRow.namespace, func.count(), func.sum(
                func.coalesce(func.length(CaseRow.embedding), 0)
                + func.coalesce(func.length(CaseRow.code), 0)
                + func.coalesce(func.length(CaseRow.next_code), 0)
            )).where(CaseRow.deleted_at.is_(None))  # fmt: skip
            if namespace is not None:
                ns = self._namespace(namespace)
                self._require_namespace(session, ns)
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
        with self._lock:
            index_bytes = sum(idx.nbytes() for ns, idx in self._indexes.items() if ns in per_ns)
        keeper = self._compression
        book, pending = keeper.active, keeper.pending
        codebook_bytes = sum(b.nbytes() for b in (book, pending) if b is not None)
        reservoir_bytes = keeper.reservoir_nbytes if book is not None else 0
        distortion = keeper.distortion()
        shared = codebook_bytes + reservoir_bytes  # held in the database and in memory

        def per_case(total: int) -> float:
            return total / cases if cases else 0.0

        return {
            "database": redact(self.url),
            "cases": cases,
            "tombstoned": tombstoned,
            "namespaces": {name: n for name, (n, _) in sorted(per_ns.items())},
            "index_kind": "flat" if book is None else "opq-ivf-pq",
            "dim": self._dim,
            "embedder": self._embedder_name,
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
                book.dead_codewords(self.settings.dead_code_threshold) if book is not None else None
            ),
            "distortion": distortion,
            "pending_codebook_version": pending.version if pending is not None else None,
            "reindex_remaining": keeper.remaining(),
        }

    # ------------------------------------------------------------------ codebooks

    def _after_write(self) -> None:
        """After new vectors: the automatic switch to codes, codebook upkeep, persistence."""
        keeper = self._compression
        if keeper.active is None:
            if self.settings.index_kind == "auto":
                self._maybe_switch()
        elif keeper.pending is None:
            reason = keeper.upkeep_reason(self._live_cases())
            if reason is not None:
                self.new_codebook(reason)
        keeper.flush()
        if (
            keeper.pending is not None
            and self.settings.reindex_in_background
            and (self._worker is None or not self._worker.running)
        ):
            self._worker = ReindexWorker(lambda stop: self.reindex(stop=stop, wait=False))

    def _maybe_switch(self) -> None:
        """Train the first codebook once enough cases exist; from then on only codes."""
        if self._dim is None:
            return
        with self._sessions() as session:
            live = int(
                session.scalar(
                    select(func.count())
                    .select_from(CaseRow)
                    .where(CaseRow.deleted_at.is_(None), CaseRow.embedding.is_not(None))
                )
                or 0
            )
        if live < self.settings.codebook_min_cases:
            return
        with self._lock:
            with self._sessions() as session:
                rows = session.execute(
                    select(CaseRow.id, CaseRow.embedding)
                    .where(CaseRow.embedding.is_not(None))
                    .order_by(CaseRow.id)
                ).all()
            ids = [r[0] for r in rows]
            vectors = np.frombuffer(b"".join(r[1] or b"" for r in rows), np.float32).reshape(
                len(rows), self._dim
            )
            # Tombstoned cases are coded too, so no raw vector outlives the switch.
            try:
                self._compression.switch_to_codes(vectors, ids)
            except CodebookMoved:  # another process switched first: use its codebook
                self._reload_codebooks()
                return
            self._rebuild_indexes()

    def _live_cases(self) -> int:
        with self._sessions() as session:
            query = select(func.count()).select_from(CaseRow).where(CaseRow.deleted_at.is_(None))
            return int(session.scalar(query) or 0)

    def new_codebook(self, reason: str = "manual") -> int:
        """Make a new codebook version (pending until `reindex` finishes); returns it.

        `dead_codes` re-seeds the dead codewords from recent embeddings; any other reason
        retrains the codebook.
        """
        keeper = self._compression
        if keeper.active is None:
            raise InvalidInputError(
                "This store has no codebook yet: it keeps exact vectors until "
                f"{self.settings.codebook_min_cases} cases exist (MEMORY_AGENT_CODEBOOK_MIN_CASES)."
            )
        if keeper.pending is not None:
            return keeper.pending.version
        with self._sessions() as session:
            sample_ids = list(
                session.scalars(
                    select(CaseRow.id)
                    .where(CaseRow.deleted_at.is_(None))
                    .order_by(func.random())
                    .limit(self.settings.codebook_train_sample)
                )
            )
        decoded = self.vectors(sample_ids if reason != "dead_codes" else [])
        try:
            return keeper.prepare(reason, decoded, cases=self._live_cases()).version
        except CodebookMoved:
            # Another process made a version meanwhile: take the state it left.
            with self._lock:
                self._reload_codebooks()
            made = self._compression.pending  # (reloaded: not the `keeper.pending` checked above)
            return made.version if made is not None else self.new_codebook(reason)

    def reindex(
        self,
        *,
        on_progress: Progress | None = None,
        stop: threading.Event | None = None,
        wait: bool = True,
    ) -> bool:
        """Re-encode every live case with the pending codebook, batch by batch.

        Search keeps using the active version's index while this runs; the new codes go to a
        side column, and only when every live case has one does a single UPDATE make the new
        version active and the index get rebuilt from the new codes. Each batch commits, so
        an interrupted job resumes where it stopped. One process runs the job at a time: if
        another one is running it, this waits for it (or, with `wait=False`, returns False at
        once). Returns True when the job finished.
        """
        if self._compression.pending is None:
            return True
        with reindex_job(self.engine, wait=wait) as mine:
            if not mine:
                return False
            return self._reindex(on_progress, stop)

    def _reindex(self, on_progress: Progress | None, stop: threading.Event | None) -> bool:
        keeper = self._compression
        # The job may have been finished (or replaced) by the process this one waited for.
        with self._sessions() as session:
            moved = keeper.moved(session)
        if moved and self._reloaded_job_done():
            return True
        re_embed = None
        if self._embedder_name is not None:
            re_embed = self._embed_tasks
        while stop is None or not stop.is_set():
            try:
                done = keeper.reencode_batch(re_embed)
                if on_progress is not None and done:
                    on_progress(done)
                if done == 0:
                    with self._lock:
                        # Cases added meanwhile got both codes on write (a writer that had
                        # not seen the pending version yet finds out before it commits).
                        if keeper.finish() is None:
                            continue
                        self._rebuild_indexes()
                    return True
            except CodebookMoved:
                # Another process finished this job, or replaced the pending codebook.
                if self._reloaded_job_done():
                    return True
        return False

    def _reloaded_job_done(self) -> bool:
        """Reload the codebooks another process changed; True if no re-encode job is left."""
        with self._lock:
            self._reload_codebooks()
        return self._compression.pending is None

    def reindex_remaining(self) -> int:
        return self._compression.remaining()

    # ------------------------------------------------------------------ async

    async def aadd(self, task: str, **kwargs: Any) -> Case:
        return await asyncio.to_thread(lambda: self.add(task, **kwargs))

    async def aadd_many(self, cases: Iterable[NewCase], **kwargs: Any) -> list[int]:
        items = list(cases)
        return await asyncio.to_thread(lambda: self.add_many(items, **kwargs))

    async def asearch(
        self, query: str | npt.ArrayLike, k: int = 5, **kwargs: Any
    ) -> list[SearchHit]:
        return await asyncio.to_thread(lambda: self.search(query, k, **kwargs))

    async def aget(self, case_id: int) -> Case:
        return await asyncio.to_thread(self.get, case_id)

    async def aupdate(self, case_id: int, **changes: Any) -> Case:
        return await asyncio.to_thread(lambda: self.update(case_id, **changes))

    async def adelete(self, case_id: int) -> None:
        await asyncio.to_thread(self.delete, case_id)

    async def amerge(self, keep_id: int, drop_ids: Sequence[int]) -> Merge:
        return await asyncio.to_thread(self.merge, keep_id, drop_ids)
