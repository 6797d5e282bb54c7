"""Codebook upkeep in the background (`CaseMemory.upkeep_in_background`, what the service
turns on): writes return while a new codebook trains, searches go on, and the new version
arrives once the training is done."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from compressed_store import add_synthetic, compressed_settings

from memory_agent.evals.synthetic_vectors import SyntheticSpace
from memory_agent.store import CaseMemory

SPACE = SyntheticSpace()


def test_writes_do_not_wait_for_a_codebook_to_train(tmp_path: Path) -> None:
    memory = CaseMemory(compressed_settings(tmp_path, reindex_in_background=True))
    add_synthetic(memory, SPACE.sample(1000, seed=1, clusters=slice(0, 8)))  # the switch, inline
    assert memory._compression.active is not None and memory._compression.pending is None
    memory.upkeep_in_background()
    upkeep = memory._upkeep
    training = threading.Event()
    release = threading.Event()
    train = upkeep.new_codebook

    def slow_training(reason: str = "manual") -> int:
        training.set()
        assert release.wait(60)  # a codebook that takes long to train
        return train(reason)

    upkeep.new_codebook = slow_training  # type: ignore[method-assign]
    # The data shifts to clusters the codebook never saw: a new version is due.
    shifted = SPACE.sample(400, seed=2, clusters=slice(24, 32))
    started = time.monotonic()
    for begin in range(0, 400, 20):
        add_synthetic(memory, shifted[begin : begin + 20], label="shifted", start=begin)
    assert training.wait(30), "the upkeep never found the drift"
    more = add_synthetic(memory, shifted[:5], label="during training")
    hits = memory.search(shifted[3], k=3)
    assert time.monotonic() - started < 30 and len(more) == 5 and hits
    assert memory._compression.pending is None  # still training
    assert upkeep.background is not None and upkeep.background.running
    release.set()
    deadline = time.monotonic() + 120
    while memory._compression.active.version == 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the re-encode job (a thread too) makes the new version active
    assert memory._compression.active.version == 2
    assert memory.search(shifted[3], k=1)[0].case.task.startswith(("shifted", "during"))
    memory.close()
    assert upkeep.background is None and upkeep.stopped
