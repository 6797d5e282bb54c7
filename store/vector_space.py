"""`VectorSpace`: the store's vector space and the per-namespace indexes derived from it.

It records (or checks) the dimension and embedder every vector comes from, builds each
namespace's index from the stored vectors or codes, keeps the indexes in step with other
processes' writes through the change log (store/index_sync.py), embeds task texts and
decodes stored codes back into vectors.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session, sessionmaker

from memory_agent.errors import EmbedderError, InvalidInputError
from memory_agent.settings import Settings
from memory_agent.store.codebook import CodeIndex
from memory_agent.store.compression import Compression
from memory_agent.store.database import insert_if_absent
from memory_agent.store.embedder import Embedder, Vectors, normalise
from memory_agent.store.index import (
    Ids,
    VectorIndex,
    as_vectors,
    check_vectors,
    make_index,
)
from memory_agent.store.index_sync import changes_after, log_bounds
from memory_agent.store.models import CaseRow, StoreMetaRow
from memory_agent.store.rerank import RERANK_DTYPE, read_copies, rerank
from memory_agent.store.rows import StoredVector

VECTOR_COLUMNS = (CaseRow.embedding, CaseRow.rerank_vector, CaseRow.code, CaseRow.codebook_version)
"""The columns a case's vector is read from (`VectorSpace.decode`)."""


class VectorSpace:
    """Dimension and embedder of the store, and each namespace's in-memory index."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        lock: threading.RLock,
        keeper: Compression,
        embedder: Callable[[], Embedder],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.lock = lock
        self.keeper = keeper
        self.embedder = embedder
        self.dim: int | None = None
        self.embedder_name: str | None = None
        self.indexes: dict[str, VectorIndex] = {}
        # Which CaseMemory wrote a change (it applied it already) and the last change of any
        # writer this one's indexes reflect (store/index_sync.py).
        self.writer = uuid.uuid4().hex
        self.seen_change = 0
        self.synced_at = 0.0
        # Set when one of this process's own logged writes failed at COMMIT, where the server
        # may have committed it all the same: the next sync then applies this process's own
        # change-log entries too (`logged_write`).
        self.replay_own = False

    def known_dim(self) -> int | None:
        """The store's dimension; until this process has seen a vector, read from the
        database (another process may have stored the first one). Once found that way, the
        next `sync` looks at the database at once: the indexes have none of those cases yet."""
        if self.dim is None:
            with self.lock:
                if self.dim is None:
                    self.load()
                    # (While it is still unknown, `sync` looks at every call anyway.)
                    self.synced_at = -math.inf
        return self.dim

    def load(self) -> None:
        with self.sessions() as session:
            row = session.get(StoreMetaRow, "vector_space")
            if row is not None:
                self.dim = int(row.value["dim"])
                self.embedder_name = row.value.get("embedder")

    def claim(self, dim: int, embedder_name: str | None) -> None:
        """Record (or check) the dimension and model every vector of this store comes from."""
        if self.dim is None:
            with self.lock, self.sessions.begin() as session:
                # Another process may claim it first (with another model, even): keep theirs
                # and check against it, never overwrite it.
                insert_if_absent(
                    session,
                    StoreMetaRow.__table__,
                    {"key": "vector_space", "value": {"dim": dim, "embedder": embedder_name}},
                )
            self.load()
        self.check(dim, embedder_name)

    def check(self, dim: int, embedder_name: str | None) -> None:
        if dim != self.dim:
            raise EmbedderError(
                f"This store holds {self.dim}-dimensional vectors from "
                f"{self.embedder_name or 'an external embedder'}, but got {dim}-dimensional "
                "ones. Use the store's embedder (MEMORY_AGENT_EMBEDDER_MODEL), or a new store "
                "(MEMORY_AGENT_HOME) and move cases with `memory-agent memory export`/`import`."
            )
        if embedder_name and self.embedder_name and embedder_name != self.embedder_name:
            raise EmbedderError(
                f"This store's vectors come from {self.embedder_name}, but the configured "
                f"embedder is {embedder_name}. Vectors of different models are not comparable:"
                " configure the same model, or use a new store and re-import the cases."
            )

    @contextmanager
    def logged_write(self) -> Iterator[Session]:
        """A transaction that logs index changes (store/index_sync.py) which this process then
        applies to its own indexes itself, after the commit (the sync skips them).

        If the COMMIT itself fails, whether the database committed is unknown: the connection
        may have broken after the server committed and before its reply came back. The next
        sync (the next search, at once) then replays the change log including this process's
        own entries, so its indexes end up holding exactly what was committed: an entry is
        there only if its transaction committed, and replaying one reads the cases as stored.
        A failure before the commit rolls back and needs nothing.
        """
        with self.sessions() as session:
            session.begin()
            yield session  # an exception here leaves the block: closing the session rolls back
            try:
                session.commit()
            except BaseException:
                self.replay_own = True
                self.synced_at = -math.inf
                raise

    def reload_codebooks(self) -> None:
        """Take the codebooks in force from the database and rebuild the indexes on them."""
        keeper = self.keeper
        keeper.flush()
        keeper.load()
        self.load()
        self.rebuild()

    def rebuild(self) -> None:
        """Build every namespace's index from the stored vectors or codes (no re-embedding).

        Once a codebook is active every live case is searched through its code of the active
        version; a pending version's codes wait in `next_code` until reindex finishes.
        """
        # The log position first: a change committed while the cases load is applied again at
        # the next sync, which is harmless (an add replaces, a remove of an absent id is a
        # no-op); one read after the load could be missed for good.
        with self.sessions() as session:
            self.seen_change = log_bounds(session)[1]
        self.replay_own = False  # everything committed so far is read below
        self.synced_at = time.monotonic()
        if self.dim is None:
            self.indexes = {}
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
        if self.keeper.active is None:
            query = query.where(CaseRow.embedding.is_not(None))
        with self.engine.connect() as conn:
            for namespace, case_id, code, embedding, version in conn.execute(query):
                rows[namespace].append((case_id, code, embedding, version))
        indexes: dict[str, VectorIndex] = {}
        for namespace in sorted(rows):
            index = self.new_index(self.dim)
            self.index_rows(index, rows[namespace])
            indexes[namespace] = index
        self.indexes = indexes

    def index_rows(self, index: VectorIndex, rows: Sequence[StoredVector]) -> None:
        """Add stored rows (id, code, raw vector, codebook version) to an index.

        Codes of the active version go in as they are. A raw vector (all there is before the
        switch) is encoded by the index. A code of another version (left by an older
        program, or by a writer that raced a finishing re-encode) is decoded with its own
        codebook first: one index never mixes versions.
        """
        assert self.dim is not None
        book = self.keeper.active if isinstance(index, CodeIndex) else None
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
        raw = [np.frombuffer(b"".join(raw_blobs), np.float32).reshape(len(raw_ids), self.dim)]
        for version, (ids, blobs) in sorted(foreign.items()):
            own = self.keeper.book(version)
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
        # A store with no vector yet (as far as this process knows) is always looked at: the
        # first one another process stores must not wait for the interval.
        if (
            not force
            and self.dim is not None
            and now - self.synced_at < self.settings.store.index_sync_interval
        ):
            return
        with self.lock:
            self.synced_at = now
            keeper = self.keeper
            with self.sessions() as session:
                low, high = log_bounds(session)
                moved = keeper.moved(session)
            if moved:
                # Another process trained or finished a codebook: codes of the old version
                # may be gone, so start again from what the database holds.
                self.reload_codebooks()
                return
            if high == self.seen_change:
                self.replay_own = False  # nothing was committed since: no own entry to replay
                return
            if not low <= self.seen_change + 1 <= high + 1:
                # The log was pruned past what this process has seen.
                self.load()
                self.rebuild()
                return
            with self.sessions() as session:
                changes = changes_after(session, self.seen_change, high)
            if self.dim is None:
                self.load()
            self.apply(changes, own=self.replay_own)
            self.seen_change = high
            self.replay_own = False

    def apply(self, changes: Sequence[Any], *, own: bool = False) -> None:
        """Other writers' changes, in order, to the in-memory indexes; with `own`, this
        process's too (after a write whose commit failed: `logged_write`). Applying a change
        again is harmless: an add reads the cases as they are now, a remove of an absent id
        is a no-op."""
        for change in changes:
            if (change.writer == self.writer and not own) or self.dim is None:
                continue
            index = self.index_for(change.namespace)
            index.remove(change.case_ids)  # an add replaces: the case may be indexed already
            if change.op != "add":
                continue
            with self.sessions() as session:
                rows = session.execute(
                    select(CaseRow.id, CaseRow.code, CaseRow.embedding, CaseRow.codebook_version)
                    .where(CaseRow.id.in_(change.case_ids.tolist()), CaseRow.deleted_at.is_(None))
                    .order_by(CaseRow.id)
                ).all()
            self.index_rows(index, [(r[0], r[1], r[2], r[3]) for r in rows])

    def new_index(self, dim: int) -> VectorIndex:
        book = self.keeper.active
        if book is None:
            return make_index(self.settings.store.index_kind, dim)
        return CodeIndex(book, self.settings.store.ivf_nprobe)

    def index_for(self, namespace: str) -> VectorIndex:
        index = self.indexes.get(namespace)
        if index is None:
            assert self.dim is not None
            index = self.new_index(self.dim)
            self.indexes[namespace] = index
        return index

    def embed(self, texts: Sequence[str]) -> Vectors:
        embedder = self.embedder()
        vectors = embedder.embed(texts)
        self.claim(int(vectors.shape[1]), embedder.name)
        return vectors

    def prepare(self, embeddings: npt.ArrayLike, count: int) -> Vectors:
        array = as_vectors(embeddings, "embeddings")
        if array.ndim != 2 or array.shape[0] != count:
            raise InvalidInputError(
                f"embeddings must be a 2-D array with one row per case ({count} rows); "
                f"got shape {array.shape}."
            )
        dim = self.dim if self.dim is not None else int(array.shape[1])
        vectors = normalise(check_vectors(array, dim, "embeddings"))
        self.claim(dim, None)
        return vectors

    def search(self, namespace: str, queries: Vectors, k: int, allowed: Ids | None) -> Any:
        """Top-k (scores, ids) of a namespace's index. Over codes, while the store keeps its
        float16 copies, the codes propose a wider candidate set and the copies re-rank it
        (store/rerank.py): the result is what exact search returns whenever the true top-k
        is among the candidates. Past the copies' disk budget, the codes alone rank."""
        index = self.index_for(namespace)
        if not isinstance(index, CodeIndex) or not self.keeper.reranks:
            return index.search(queries, k, allowed)
        wide = max(k, self.settings.store.rerank_candidates)
        scores, ids = index.search(queries, wide, allowed)
        halves = read_copies(self.engine, np.unique(ids[ids >= 0]).tolist())
        return rerank(queries, scores, ids, k, halves)

    def vectors(self, ids: Sequence[int]) -> Vectors:
        """The stored vectors of these cases, one row per id in order (zeros if unknown).

        Once a case is stored as a code, its vector is its float16 re-rank copy, or where
        there is none the code decoded: an approximation of the embedding whose error is the
        codebook's distortion.
        """
        if not ids or self.dim is None:
            return np.zeros((len(ids), self.dim or 0), dtype=np.float32)
        with self.sessions() as session:
            query = select(CaseRow.id, *VECTOR_COLUMNS).where(CaseRow.id.in_(ids))
            rows = {r[0]: r[1:] for r in session.execute(query).all()}
        return self.decode(ids, rows)

    def decode(self, ids: Sequence[int], rows: Mapping[int, Sequence[Any]]) -> Vectors:
        """`vectors` from rows already read: `rows[id]` holds the `VECTOR_COLUMNS` of the
        case (a reader that needs other columns too reads them in the same query)."""
        out = np.zeros((len(ids), self.dim or 0), dtype=np.float32)
        if not ids or self.dim is None:
            return out
        by_version: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for position, case_id in enumerate(ids):
            found = rows.get(case_id)
            if found is None:
                continue
            raw, half, code, version = found
            if raw is not None:
                out[position] = np.frombuffer(raw, dtype=np.float32)
            elif half is not None:
                out[position] = np.frombuffer(half, dtype=RERANK_DTYPE)
            elif code is not None and version is not None:
                by_version[version].append((position, code))
        for version, items in by_version.items():
            book = self.keeper.book(version)
            if book is None:
                continue
            codes = np.frombuffer(b"".join(c for _, c in items), np.uint8).reshape(len(items), -1)
            out[[p for p, _ in items]] = book.decode(codes)
        return out
