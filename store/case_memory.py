"""`CaseMemory`: the persistent case store with its vector index.

A facade: each job lives in a room of its own and this class keeps the public API in one
place. The rooms: `VectorSpace` (dimension, embedder, per-namespace indexes and their sync
with other processes), `CaseWriter` (add, update, tombstone, purge), `Maintenance` (merge,
dedupe, budgets, eviction), `Transfer` (export, import), `CodebookUpkeep` (switch to codes,
new codebooks, re-encode), `Usage` (counts and sizes), and the repositories `CaseStats`
(per-case statistics) and `PolicyStates` (policies' saved state), `Retrieval` (nearest,
search, policy candidates), `NamespaceAccess` (per-namespace access tokens). Reading cases by
id and listing stay here.

A namespace may have an access token (`set_namespace_token`): every operation on it then
needs the token, given as `namespace_token=` (or `settings.namespace_token`, env
MEMORY_AGENT_NAMESPACE_TOKEN), or for a block of calls with `presenting(token)`; without it
the operation raises NamespaceAccessError before doing anything. Every namespace an operation
acts on is resolved through one place, `namespace_for`, which checks it.

Operations by case id (`get`, `update`, `delete`, `merge`) act within one namespace: the one
passed as `namespace=`, by default the memory's configured namespace (`settings.namespace`),
never "any namespace". A case of another namespace is "not found", with the same error as an
id that does not exist, so one tenant can neither read, change nor delete another's cases nor
learn that their ids exist. (`get_many` and `vectors` take ids the store itself handed out
for one namespace, from a search or a policy's shortlist, and are not scoped.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from memory_agent.errors import CaseNotFoundError
from memory_agent.settings import Settings
from memory_agent.store.case_stats import CaseStats
from memory_agent.store.compression import Compression, ReindexWorker
from memory_agent.store.database import corrupt_store_error, create_store_engine
from memory_agent.store.embedder import Embedder, Vectors, embedder_from_settings
from memory_agent.store.index import Ids, VectorIndex, as_vectors
from memory_agent.store.maintenance import Maintenance
from memory_agent.store.models import CaseRow, NamespaceRow
from memory_agent.store.namespace_tokens import NamespaceAccess
from memory_agent.store.policy_state import PolicyStates
from memory_agent.store.records import (
    Candidate,
    Case,
    ImportReport,
    Merge,
    NewCase,
    SearchHit,
)
from memory_agent.store.retrieval import Retrieval
from memory_agent.store.rows import (
    Progress,
    content_hash,
    require_namespace,
    to_case,
)
from memory_agent.store.run_log import EventListener, RunLog
from memory_agent.store.transfer import ImportFormat, Transfer
from memory_agent.store.upkeep import CodebookUpkeep
from memory_agent.store.usage import Usage
from memory_agent.store.validation import check_namespace
from memory_agent.store.vector_space import VectorSpace
from memory_agent.store.writes import CaseWriter

__all__ = ["CaseMemory", "Progress", "content_hash"]


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
        namespace_token: str | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.url = database_url or self.settings.resolved_database_url()
        token = namespace_token if namespace_token is not None else self.settings.namespace_token
        self.engine = create_store_engine(self.url)
        try:
            self._open(embedder, token)
        except DBAPIError as exc:
            self.engine.dispose()
            if (corrupt := corrupt_store_error(self.url, exc)) is not None:
                raise corrupt from exc
            raise

    def _open(self, embedder: Embedder | None, token: object) -> None:
        """Everything `__init__` sets up on the open engine; reads the whole vector index,
        so a damaged file shows here (as a clear error) rather than at the first search."""
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._embedder = embedder
        self._lock = threading.RLock()
        self._compression = Compression(self.settings, self._sessions)
        self.case_stats = CaseStats(self._sessions)
        """The per-case, per-stage value statistics: their one reader and writer."""
        self.policy_states = PolicyStates(self._sessions)
        """The policies' saved state (networks, task histories)."""
        self._access = NamespaceAccess(
            self._sessions, token, self.settings.store.index_sync_interval
        )
        self._space = VectorSpace(
            self.settings, self.engine, self._sessions, self._lock, self._compression,
            lambda: self.embedder,
        )  # fmt: skip
        self._writes = CaseWriter(self)
        self._maintenance = Maintenance(self)
        self._transfer = Transfer(self)
        self._upkeep = CodebookUpkeep(self)
        self._usage = Usage(self)
        self._retrieval = Retrieval(self)
        self._space.load()
        self._space.rebuild()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._upkeep.stop()  # between batches: the job resumes at the next open
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
        """The vector size of this store, once the first vector is stored (by any process:
        until this one has seen a vector, the database is asked)."""
        return self._space.known_dim()

    @property
    def _indexes(self) -> dict[str, VectorIndex]:
        """Each namespace's in-memory index (for tests and diagnostics)."""
        return self._space.indexes

    @property
    def _worker(self) -> ReindexWorker | None:
        """The background re-encode job of this process, if one was started."""
        return self._upkeep.worker

    def upkeep_in_background(self) -> None:
        """Run the codebook upkeep after writes in a background thread from now on, not in
        the writing call: for a server, whose writes must not wait minutes for a codebook to
        train (`BackgroundUpkeep`). `close` stops it."""
        self._upkeep.in_background()

    def sync(self, *, force: bool = False) -> None:
        """Bring the in-memory indexes up to date with other processes' writes.

        Searches call it; it looks at the database at most every `index_sync_interval`
        seconds unless forced. This process's own writes are in its indexes as soon as they
        commit.
        """
        self._space.sync(force=force)

    # ------------------------------------------------------------------ namespaces

    def namespaces(self) -> list[str]:
        with self._sessions() as session:
            return list(session.scalars(select(NamespaceRow.name).order_by(NamespaceRow.name)))

    def _named(self, namespace: str | None) -> str:
        """The namespace named (None: the configured one), a valid name; no access check."""
        return check_namespace(namespace if namespace is not None else self.settings.namespace)

    def namespace_for(self, namespace: str | None) -> str:
        """The namespace an operation with `namespace` acts on (None: the configured one),
        checked: a valid name, and if it has an access token, the token presented opens it
        (NamespaceAccessError otherwise, before anything is done)."""
        ns = self._named(namespace)
        self._access.check(ns)
        return ns

    def may_open(self, namespace: str) -> bool:
        """Whether operations on `namespace` are allowed with the token presented (always,
        for a namespace without a token)."""
        return self._access.may_open(check_namespace(namespace))

    def check_store_wide(self, what: str) -> None:
        """For an operation on every namespace (`what`, e.g. "reset every namespace's
        values"): NamespaceAccessError unless the token presented opens every protected one."""
        self._access.check_all(what)

    def presenting(self, token: str | None) -> AbstractContextManager[None]:
        """Operations inside `with memory.presenting(token):` present `token` (None: none)
        instead of the memory's own: a server acting for many callers passes each request's
        token. Per thread (a context variable)."""
        return self._access.presenting(token)

    def namespace_protected(self, namespace: str | None = None) -> bool:
        """Whether `namespace` (default: the configured one) has an access token."""
        return self._access.protected(self._named(namespace))

    def set_namespace_token(self, namespace: str | None = None) -> str:
        """Give a namespace without a token (created if need be) a new access token and
        return it: the only time it is shown; only a salted hash is stored. From then on
        every operation on the namespace must present it."""
        return self._access.set(self._named(namespace))

    def rotate_namespace_token(self, namespace: str | None = None) -> str:
        """Replace a namespace's token (the current one must be presented); returns the new
        one. The old one stops working here at once, in other processes within
        `store.index_sync_interval`."""
        return self._access.rotate(self._named(namespace))

    def remove_namespace_token(self, namespace: str | None = None) -> None:
        """Make a namespace open again (the current token must be presented)."""
        self._access.remove(self._named(namespace))

    # ------------------------------------------------------------------ reading

    def get(
        self, case_id: int, *, namespace: str | None = None, include_deleted: bool = False
    ) -> Case:
        """The case with this id in `namespace` (default: the configured one);
        CaseNotFoundError if there is none there (or it was deleted)."""
        ns = self.namespace_for(namespace)
        with self._sessions() as session:
            row = session.get(CaseRow, case_id)
            if row is not None and row.namespace != ns:
                row = None  # another tenant's case: exactly as if it did not exist
            if row is None or (row.deleted_at is not None and not include_deleted):
                raise CaseNotFoundError(
                    f"No case with id {case_id} in namespace {ns!r}"
                    + (" (it was deleted)" if row is not None else "")
                    + "; see `memory-agent memory list`."
                )
            return to_case(row, self.case_stats.read(session, [case_id]).get(case_id))

    def get_many(self, ids: Sequence[int], *, namespace: str | None = None) -> list[Case]:
        """Live cases for these ids, in the order given (unknown ids are left out). With
        `namespace`, only that namespace's: what a caller serving one tenant must pass."""
        ns = None if namespace is None else self.namespace_for(namespace)
        return self._retrieval.cases(ids, ns)

    def list_cases(
        self, namespace: str | None = None, *, limit: int = 20, offset: int = 0
    ) -> list[Case]:
        """Live cases of a namespace, newest first."""
        ns = self.namespace_for(namespace)
        with self._sessions() as session:
            require_namespace(session, ns)
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
            return [to_case(r, stats.get(r.id)) for r in rows]

    def count(self, namespace: str | None = None) -> int:
        query = select(func.count()).select_from(CaseRow).where(CaseRow.deleted_at.is_(None))
        if namespace is not None:
            query = query.where(CaseRow.namespace == self.namespace_for(namespace))
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    def nearest(
        self,
        vectors: npt.ArrayLike,
        k: int,
        *,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """Raw top-k (scores, ids) for query vectors; ids are -1 where fewer than k exist."""
        return self._retrieval.nearest(vectors, k, namespace=namespace, filters=filters)

    def search(
        self,
        query: str | npt.ArrayLike,
        k: int = 5,
        *,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """Cases whose task is most similar to `query` (text or vector), best first."""
        return self._retrieval.search(query, k, namespace=namespace, filters=filters)

    def candidates(
        self,
        state: npt.ArrayLike,
        *,
        namespace: str | None = None,
        size: int | None = None,
        filters: Mapping[str, Any] | None = None,
        with_text: bool = False,
    ) -> list[Candidate]:
        """The shortlist for `state` as a policy sees it (best similarity first); with
        `with_text`, each candidate carries its task, plan and answer too."""
        return self._retrieval.candidates(
            state, namespace=namespace, size=size, filters=filters, with_text=with_text
        )

    def run_log(self, listener: EventListener | None = None) -> RunLog:
        """The log of agent runs and their events in this store's database; each caller gets
        its own, so one agent's listener never hears another's runs."""
        return RunLog(self.engine, listener)

    def vectors(self, ids: Sequence[int]) -> Vectors:
        """The stored vectors of these cases, one row per id in order (zeros if unknown).

        Once a case is stored as a code, its vector is the code decoded: an approximation of
        the embedding whose error is the codebook's distortion.
        """
        return self._space.vectors(ids)

    # ------------------------------------------------------------------ writing

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
        vectors = None if embedding is None else as_vectors(embedding, "embedding")[None, :]
        ids = self.add_many([new], namespace=namespace, embeddings=vectors)
        return self.get(ids[0], namespace=namespace)

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
        """Store many cases, committing batch by batch; returns the new ids in order."""
        return self._writes.add_many(
            cases,
            namespace=namespace,
            embeddings=embeddings,
            batch_size=batch_size,
            skip_duplicates=skip_duplicates,
            on_progress=on_progress,
            namespaces=namespaces,
        )

    def update(self, case_id: int, *, namespace: str | None = None, **changes: Any) -> Case:
        """Change fields of a case of `namespace` (default: the configured one); a new task is
        re-embedded and re-indexed."""
        return self._writes.update(case_id, namespace, **changes)

    def purge(self, namespace: str | None = None) -> int:
        """Remove tombstoned cases for good (of one namespace, or of all, which needs the
        token of every protected one); returns how many rows were removed."""
        if namespace is None:
            self.check_store_wide("purge every namespace")
        return self._writes.purge(namespace)

    def delete(
        self, case_id: int, *, namespace: str | None = None, reason: str = "deleted"
    ) -> None:
        """Tombstone a case of `namespace` (default: the configured one): it leaves search and
        listings but stays in the database."""
        self._writes.tombstone([case_id], reason, namespace=self.namespace_for(namespace))

    # ------------------------------------------------------------------ maintenance, transfer

    def merge(
        self, keep_id: int, drop_ids: Sequence[int], *, namespace: str | None = None
    ) -> Merge:
        """Fold near-duplicate cases of `namespace` (default: the configured one) into
        `keep_id`, summing their statistics."""
        return self._maintenance.merge(keep_id, drop_ids, namespace)

    def find_duplicates(
        self, namespace: str | None = None, *, threshold: float = 0.95
    ) -> list[list[int]]:
        """Groups of live cases whose tasks are at least `threshold` cosine-similar."""
        return self._maintenance.find_duplicates(namespace, threshold=threshold)

    def dedupe(self, namespace: str | None = None, *, threshold: float = 0.95) -> list[Merge]:
        """Merge each group of near-duplicates into its best case (reward, visits, age)."""
        return self._maintenance.dedupe(namespace, threshold=threshold)

    def set_budget(self, namespace: str | None, max_cases: int | None) -> list[int]:
        """Set a namespace's case budget (None: the settings' default); evicts at once."""
        return self._maintenance.set_budget(namespace, max_cases)

    def budget(self, namespace: str | None = None) -> int | None:
        return self._maintenance.budget(namespace)

    def enforce_budget(
        self, namespace: str | None = None, *, protect: Sequence[int] = ()
    ) -> list[int]:
        """Evict the lowest-value cases until the namespace fits its budget."""
        return self._maintenance.enforce_budget(namespace, protect=protect)

    def export(self, target: Path | IO[str], namespace: str | None = None) -> int:
        """Write live cases as JSONL (all namespaces unless one is named, which needs the
        token of every protected one); returns the count."""
        if namespace is None:
            self.check_store_wide("export every namespace")
        return self._transfer.export(target, namespace)

    def import_file(
        self,
        path: Path,
        *,
        fmt: ImportFormat = "jsonl",
        namespace: str | None = None,
        skip_invalid: bool = False,
        on_progress: Progress | None = None,
    ) -> ImportReport:
        """Import a JSONL case file (our export format, or a Memento case bank)."""
        return self._transfer.import_file(
            path, fmt=fmt, namespace=namespace, skip_invalid=skip_invalid, on_progress=on_progress
        )

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Counts and sizes of the store (or of one namespace)."""
        return self._usage.stats(namespace)

    # ------------------------------------------------------------------ codebooks

    def new_codebook(self, reason: str = "manual") -> int:
        """Make a new codebook version (pending until `reindex` finishes); returns it."""
        return self._upkeep.new_codebook(reason)

    def reindex(
        self,
        *,
        on_progress: Progress | None = None,
        stop: threading.Event | None = None,
        wait: bool = True,
    ) -> bool:
        """Re-encode every live case with the pending codebook, batch by batch."""
        return self._upkeep.reindex(on_progress=on_progress, stop=stop, wait=wait)

    def reindex_remaining(self) -> int:
        return self._upkeep.reindex_remaining()

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

    async def aget(self, case_id: int, *, namespace: str | None = None) -> Case:
        return await asyncio.to_thread(lambda: self.get(case_id, namespace=namespace))

    async def aupdate(self, case_id: int, *, namespace: str | None = None, **changes: Any) -> Case:
        return await asyncio.to_thread(lambda: self.update(case_id, namespace=namespace, **changes))

    async def adelete(self, case_id: int, *, namespace: str | None = None) -> None:
        await asyncio.to_thread(lambda: self.delete(case_id, namespace=namespace))

    async def amerge(
        self, keep_id: int, drop_ids: Sequence[int], *, namespace: str | None = None
    ) -> Merge:
        return await asyncio.to_thread(lambda: self.merge(keep_id, drop_ids, namespace=namespace))
