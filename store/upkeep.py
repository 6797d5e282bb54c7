"""`CodebookUpkeep`: when the store switches to codes, retrains or re-seeds a codebook, drops its
float16 re-rank copies past their disk budget, and the re-encode job that moves every case
to a new codebook version (store/compression.py holds the codebooks themselves)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from memory_agent.errors import InvalidInputError
from memory_agent.store.compression import CodebookMoved, ReindexWorker
from memory_agent.store.index_sync import reindex_job
from memory_agent.store.models import CaseRow
from memory_agent.store.rerank import copies_fit, stored_cases
from memory_agent.store.room import Room
from memory_agent.store.rows import Progress


def compact(engine: Engine) -> None:
    """Give the freed pages back after the switch (float32 vectors, 1.5 KB per case at 384-d)
    or after the re-rank copies are dropped (768 B): SQLite keeps them in the file otherwise.
    PostgreSQL's autovacuum does this on its own.
    Best effort: while another connection holds the database, the freed pages are reused by
    later writes instead."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM")
            # In WAL mode VACUUM writes the compacted database into the log first: fold it
            # back and truncate the log, or the pair on disk is bigger than before.
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except OperationalError:
        pass  # another connection was reading or writing: the pages get reused instead


if TYPE_CHECKING:
    from memory_agent.store.case_memory import CaseMemory

log = logging.getLogger(__name__)


class CodebookUpkeep(Room):
    """Compression orchestration after writes, and the re-encode job."""

    def __init__(self, memory: CaseMemory) -> None:
        super().__init__(memory)
        self.worker: ReindexWorker | None = None
        self.background: BackgroundUpkeep | None = None
        self.stopped = False

    def stop(self) -> None:
        """Stop the background re-encode job between batches (it resumes at the next open),
        and the background upkeep (a codebook in training is dropped; the next write of the
        next open finds it due again)."""
        self.stopped = True  # a background run still training starts no re-encode job after
        if self.background is not None:
            self.background.stop()
            self.background = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def in_background(self) -> None:
        """From now on `after_write` hands the upkeep to a thread (`BackgroundUpkeep`)."""
        if self.background is None:
            self.background = BackgroundUpkeep(self.upkeep)

    def after_write(self) -> None:
        """After new vectors: the automatic switch to codes, codebook upkeep, the re-rank
        copies' disk budget, persistence; in the writer's thread, or handed to the background
        thread (`in_background`)."""
        if self.background is not None:
            self.background.due()
            return
        self.upkeep()

    def upkeep(self) -> None:
        """The switch to codes when due, a new codebook version when the active one needs
        one (growth, drift, dead codewords), the re-rank copies dropped past their disk budget,
        the reservoir written out, and the re-encode job started for a pending version."""
        keeper = self.keeper
        if keeper.active is None:
            if self.settings.store.index_kind == "auto":
                self.maybe_switch()
        elif keeper.pending is None and self.settings.store.codebook_upkeep:
            reason = keeper.upkeep_reason(self.live_cases())
            if reason is not None:
                self.new_codebook(reason)
        self.maybe_drop_copies()
        with self.lock:  # writers fill the reservoir under it; flushing must not lose a slot
            keeper.flush()
        if (
            keeper.pending is not None
            and not self.stopped
            and self.settings.store.reindex_in_background
            and (self.worker is None or not self.worker.running)
        ):
            self.worker = ReindexWorker(lambda stop: self.reindex(stop=stop, wait=False))

    def switch_due(self, live: int) -> bool:
        """Whether a store of `live` exact vectors should switch to codes now: once it holds
        enough cases to train on and its exact index outgrows the RAM budget. Below that,
        exact search is both exact and fast enough (10k cases: 15 MB, ~0.6 ms a query), and
        codes would only save megabytes at the cost of recall (BENCHMARKS.md)."""
        assert self.space.dim is not None
        exact_bytes = live * (self.space.dim * 4 + 8)  # float32 vector + int64 id per case
        budget = self.settings.store.exact_ram_budget_mb * 2**20
        return live >= self.settings.store.codebook_min_cases and exact_bytes > budget

    def maybe_switch(self) -> None:
        """Train the first codebook once the store outgrows exact search; from then on only
        codes in RAM (and float16 re-rank copies on disk)."""
        if self.space.dim is None:
            return
        with self.sessions() as session:
            live = int(
                session.scalar(
                    select(func.count())
                    .select_from(CaseRow)
                    .where(CaseRow.deleted_at.is_(None), CaseRow.embedding.is_not(None))
                )
                or 0
            )
        if not self.switch_due(live):
            return
        with self.lock:
            with self.sessions() as session:
                rows = session.execute(
                    select(CaseRow.id, CaseRow.embedding)
                    .where(CaseRow.embedding.is_not(None))
                    .order_by(CaseRow.id)
                ).all()
            ids = [r[0] for r in rows]
            vectors = np.frombuffer(b"".join(r[1] or b"" for r in rows), np.float32).reshape(
                len(rows), self.space.dim
            )
            # Tombstoned cases are coded too, so no raw vector outlives the switch.
            try:
                self.keeper.switch_to_codes(vectors, ids)
            except CodebookMoved:  # another process switched first: use its codebook
                self.space.reload_codebooks()
                return
            self.space.rebuild()
        compact(self.engine)

    def maybe_drop_copies(self) -> None:
        """Once the float16 re-rank copies of every stored case outgrow
        `store.rerank_disk_budget_mb`, drop them and rank by codes alone (store/rerank.py);
        the freed pages go back as after the switch. Checked after each write call, so a
        store may pass the budget by one call's cases before the copies go."""
        dim = self.space.dim
        if dim is None or self.keeper.active is None or not self.keeper.reranks:
            return
        with self.sessions() as session:
            rows = stored_cases(session)
        if copies_fit(self.settings, rows, dim):
            return
        self.keeper.drop_copies(rows, dim)
        compact(self.engine)

    def live_cases(self) -> int:
        with self.sessions() as session:
            query = select(func.count()).select_from(CaseRow).where(CaseRow.deleted_at.is_(None))
            return int(session.scalar(query) or 0)

    def new_codebook(self, reason: str = "manual") -> int:
        """Make a new codebook version (pending until `reindex` finishes); returns it.

        `dead_codes` re-seeds the dead codewords from recent embeddings; any other reason
        retrains the codebook.
        """
        keeper = self.keeper
        if keeper.active is None:
            raise InvalidInputError(
                "This store has no codebook yet: it keeps exact vectors until "
                f"{self.settings.store.codebook_min_cases} cases exist "
                "(MEMORY_AGENT_CODEBOOK_MIN_CASES)."
            )
        if keeper.pending is not None:
            return keeper.pending.version
        with self.sessions() as session:
            sample_ids = list(
                session.scalars(
                    select(CaseRow.id)
                    .where(CaseRow.deleted_at.is_(None))
                    .order_by(func.random())
                    .limit(self.settings.store.codebook_train_sample)
                )
            )
        decoded = self.space.vectors(sample_ids if reason != "dead_codes" else [])
        try:
            return keeper.prepare(reason, decoded, cases=self.live_cases()).version
        except CodebookMoved:
            # Another process made a version meanwhile: take the state it left.
            with self.lock:
                self.space.reload_codebooks()
            made = self.keeper.pending  # (reloaded: not the `keeper.pending` checked above)
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
        if self.keeper.pending is None:
            return True
        with reindex_job(self.engine, wait=wait) as mine:
            if not mine:
                return False
            return self._reindex(on_progress, stop)

    def _reindex(self, on_progress: Progress | None, stop: threading.Event | None) -> bool:
        keeper = self.keeper
        # The job may have been finished (or replaced) by the process this one waited for.
        with self.sessions() as session:
            moved = keeper.moved(session)
        if moved and self.reloaded_job_done():
            return True
        re_embed = None
        if self.space.embedder_name is not None:
            re_embed = self.space.embed
        while stop is None or not stop.is_set():
            try:
                done = keeper.reencode_batch(re_embed)
                if on_progress is not None and done:
                    on_progress(done)
                if done == 0:
                    with self.lock:
                        # Cases added meanwhile got both codes on write (a writer that had
                        # not seen the pending version yet finds out before it commits).
                        if keeper.finish() is None:
                            continue
                        self.space.rebuild()
                    return True
            except CodebookMoved:
                # Another process finished this job, or replaced the pending codebook.
                if self.reloaded_job_done():
                    return True
        return False

    def reloaded_job_done(self) -> bool:
        """Reload the codebooks another process changed; True if no re-encode job is left."""
        with self.lock:
            self.space.reload_codebooks()
        return self.keeper.pending is None

    def reindex_remaining(self) -> int:
        return self.keeper.remaining()


class BackgroundUpkeep:
    """Runs the codebook upkeep (`CodebookUpkeep.upkeep`) in a daemon thread, after writes
    but never inside one: a server's writes then never wait for a codebook to train (a retrain
    inside a write took minutes on a loaded 2-core machine, holding the server's lock).

    One run at a time; writes while it runs make it run once more, at most every `gap`
    seconds (the checks read a count of live cases and measure the codebook's distortion).
    Searches and writes go on meanwhile; the switch to codes still trains under the store's
    lock, so searches wait for that one-time step. An error is logged and the next write
    tries again.
    """

    def __init__(self, job: Callable[[], None], gap: float = 1.0) -> None:
        self._job = job
        self._gap = gap
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.runs = 0

    def due(self) -> None:
        """A write happened: run the upkeep soon."""
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codebook-upkeep",
                                                daemon=True)  # fmt: skip
                self._thread.start()
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            if self._stop.is_set():
                return
            self._due.clear()
            try:
                self._job()
            except Exception:  # the next write tries again; a server must not lose its upkeep
                log.exception("Codebook upkeep failed; it runs again after the next write.")
            self.runs += 1
            if self._stop.wait(self._gap):
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current run; waits at most `timeout` seconds (a training run goes
        on in its daemon thread and is dropped when the process exits)."""
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
