"""`RunLogBatcher`: group commit for the run log.

A server logs every retrieval (the run id a later outcome names). One transaction per
retrieval costs more than the rest of a retrieval with its vector given, and concurrent
retrievals would each wait for the database's write lock in turn. So callers hand their
finished runs to one thread that writes whatever has queued while its previous transaction
ran, in one transaction, and each caller returns only once its own run is committed.

What that promises: a run whose `record` call returned is in the database, visible to every
process sharing it, and survives a crash of this one; a run whose call has not returned yet
may be lost with the process (its caller never got an answer to show anyone). There is no
fixed wait: a lone run is written at once; under load a batch is what arrived during one
commit. `close` writes what is queued before it stops.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from memory_agent.store.run_log import NewRun, RunLog

_Item = tuple[NewRun, "Future[None]"]


class RunLogBatcher:
    """Logs whole runs (`NewRun`) from many threads, many runs per transaction."""

    def __init__(self, log: RunLog, max_batch: int = 256) -> None:
        self._log = log
        self._max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()
        self._closed = False
        self.transactions = 0
        """Batches written (for diagnostics and tests)."""
        self.runs = 0

    def record(self, run: NewRun) -> None:
        """Log `run`; returns once it is committed (the database's error is raised here)."""
        future: Future[None] = Future()
        with self._state:
            queued = not self._closed
            if queued:
                self._ensure_thread()
                self._queue.put((run, future))
        if not queued:  # after close: written on its own, at once
            self._log.record([run])
            return
        future.result()

    def _ensure_thread(self) -> None:
        # (Re)started if it died: a writer killed by a BaseException must not leave later
        # callers waiting on a queue nobody reads.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="run-log-batcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # close(): write this batch, then stop
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[_Item]) -> None:
        try:
            self._log.record([run for run, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            # One bad run must not fail the others: write each alone, each its own outcome.
            for run, future in batch:
                try:
                    self._log.record([run])
                except Exception as own:
                    future.set_exception(own)
                else:
                    future.set_result(None)
            return
        except BaseException as exc:  # e.g. KeyboardInterrupt: no caller may wait forever
            for _, future in batch:
                future.set_exception(exc)
            raise
        self.transactions += 1
        self.runs += len(batch)
        for _, future in batch:
            future.set_result(None)

    def close(self) -> None:
        """Write the queued runs and stop the thread; later `record` calls write at once."""
        with self._state:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)  # after every queued run: they are written first
        if thread is not None:
            thread.join()
