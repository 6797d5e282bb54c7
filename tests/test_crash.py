"""A `kill -9` in the middle of `add_many` loses no committed case, and the index matches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory, NewCase

    url, home = sys.argv[1], sys.argv[2]
    memory = CaseMemory(Settings(home=home), database_url=url)
    rng = np.random.default_rng(0)
    n = 200_000
    vectors = rng.normal(size=(n, 64)).astype("float32")
    cases = [NewCase(task=f"synthetic task {i}", reward=1.0) for i in range(n)]
    print("ready", flush=True)
    memory.add_many(cases, embeddings=vectors, batch_size=500)
    print("finished", flush=True)
    """
)


def _committed(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM cases")).scalar_one())
    except Exception:  # the table may not exist yet while the writer migrates
        return 0
    finally:
        engine.dispose()


@pytest.mark.slow
def test_kill_9_during_add_many(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "writer.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, "-c", WRITER, database_url, str(tmp_path / "home")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as writer,
    ):
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready", log.read_text()
            deadline = time.monotonic() + 120
            while _committed(database_url) < 2_000:
                assert writer.poll() is None, f"the writer ended early: {log.read_text()}"
                assert time.monotonic() < deadline, "the writer committed nothing in 2 minutes"
                time.sleep(0.05)
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()
    assert writer.returncode == -signal.SIGKILL

    committed = _committed(database_url)
    assert 2_000 <= committed < 200_000
    reopened = CaseMemory(Settings(home=tmp_path / "home"), database_url=database_url)
    try:
        stats = reopened.stats()
        assert stats["cases"] == committed
        assert sum(len(index) for index in reopened._indexes.values()) == committed
        # Every committed case is found by its own vector, i.e. it is in the index.
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(committed, 64)).astype("float32")
        sample = rng.choice(committed, size=200, replace=False)
        scores, ids = reopened.nearest(vectors[sample], 1)
        assert [int(i) for i in ids[:, 0]] == [int(s) + 1 for s in sample]
        # The store keeps working: a new case lands after the committed ones.
        new = reopened.add("after the crash", embedding=np.ones(64, dtype=np.float32))
        assert new.id > committed
    finally:
        reopened.close()
