"""`EmbedBatcher`: concurrent callers' texts embedded together, one model call per batch.

A server answers many retrieves at once and each needs its query embedded. One model call
on 32 texts costs far less than 32 calls on one (the matrices fill the cores; the Python and
tokenizer overhead is paid once), so callers hand their text to one thread that embeds
whatever has queued while the previous batch ran. There is no fixed wait: a lone caller is
embedded at once, and under load the batches grow by themselves.
"""

from __future__ import annotations

import queue
import sys
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from memory_agent.store.embedder import Embedder

Vector = npt.NDArray[np.float32]


class EmbedBatcher:
    """Embeds texts from many threads through one embedder, batching what arrives together;
    with `threads`, the model (if it runs on torch) uses that many threads."""

    def __init__(self, embedder: Embedder, max_batch: int = 64, threads: int | None = None) -> None:
        self._embedder = embedder
        self._max_batch = max_batch
        self._threads = threads
        self._queue: queue.Queue[tuple[str, Future[Vector]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        """Model calls made (for diagnostics and tests)."""
        self.texts = 0

    def embed(self, text: str) -> Vector:
        """The embedding of `text`; blocks until its batch is done (the embedder's error is
        raised here, in the caller's thread)."""
        self._ensure_thread()
        future: Future[Vector] = Future()
        self._queue.put((text, future))
        return future.result()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="embed-batcher", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # close() while requests are queued: finish them first
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                vectors = self._embedder.embed([text for text, _ in batch])
            except BaseException as exc:  # handed to each waiting caller, raised there
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.texts += len(batch)
            if self._threads is not None:
                self._limit_threads(self._threads)
                self._threads = None
            for row, (_, future) in enumerate(batch):
                future.set_result(np.asarray(vectors[row], dtype=np.float32))

    @staticmethod
    def _limit_threads(threads: int) -> None:
        """Torch's intra-op threads, set from the thread that runs the model (with OpenMP the
        setting is the calling thread's), once the first batch has loaded it. In a server the
        requests' own work needs a core: two torch threads on a busy 2-core machine spun
        against each other and everything else (one text: 130 ms with two, 23 ms with one)."""
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Stop the thread once the queued texts are embedded."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
