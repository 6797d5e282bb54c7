"""`EmbedBatcher`: concurrent callers' texts go to the embedder together, each caller gets
its own row, and an embedder error reaches every caller of that batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hash_embedder import HashEmbedder

from memory_agent.embed_batch import EmbedBatcher


class SlowEmbedder(HashEmbedder):
    """The hash embedder with a fixed cost per call, recording each call's batch size."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        with self.lock:
            self.calls.append(len(texts))
        time.sleep(0.05)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model crashed")
        return super().embed(texts)


def test_concurrent_texts_are_embedded_in_few_batches_with_the_right_rows() -> None:
    embedder = SlowEmbedder()
    batcher = EmbedBatcher(embedder, max_batch=16)
    texts = [f"text {i}" for i in range(40)]
    with ThreadPoolExecutor(max_workers=40) as pool:
        rows = list(pool.map(batcher.embed, texts))
    batcher.close()
    expected = HashEmbedder().embed(texts)
    np.testing.assert_allclose(np.vstack(rows), expected, rtol=0, atol=1e-6)
    assert sum(embedder.calls) == 40 and max(embedder.calls) <= 16
    assert len(embedder.calls) <= 8  # one call per text would be 40
    assert batcher.batches == len(embedder.calls) and batcher.texts == 40


def test_an_embedder_error_reaches_the_callers_and_the_batcher_goes_on() -> None:
    batcher = EmbedBatcher(SlowEmbedder(fail_on="bad"), max_batch=1)
    with pytest.raises(RuntimeError, match="model crashed"):
        batcher.embed("bad")
    assert batcher.embed("good").shape == (32,)
    batcher.close()


def test_threads_limit_the_models_torch_threads_after_the_first_batch() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    seen: list[int] = []

    class TorchThreads(HashEmbedder):
        def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
            seen.append(torch.get_num_threads())  # in the thread that runs the model
            return super().embed(texts)

    torch.set_num_threads(2)
    try:
        batcher = EmbedBatcher(TorchThreads(), threads=1)
        batcher.embed("loads the model")
        batcher.embed("runs on one thread")
        batcher.close()
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 1]
