"""Group commit of the run log (`RunLogBatcher`) and the service's retrievals logged through
it: concurrent runs share transactions, a caller returns only once its run is committed (so
another process finds it at once, and a killed process loses no run it acknowledged), one
bad run fails only its own caller, and `close` writes what is queued. SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hash_embedder import HashEmbedder
from sqlalchemy.exc import IntegrityError

import memory_agent
from memory_agent.service import MemoryService
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase
from memory_agent.store.run_log import NewEvent, NewRun, RunLog
from memory_agent.store.run_log_batch import RunLogBatcher

TESTS = Path(__file__).resolve().parent


def _open(home: Path, url: str) -> CaseMemory:
    return CaseMemory(Settings(home=home), embedder=HashEmbedder(), database_url=url)  # type: ignore[arg-type]


@pytest.fixture
def memory(database_url: str, isolated_home: Path) -> Iterator[CaseMemory]:
    with _open(isolated_home, database_url) as store:
        yield store


def _run(run_id: str | None = None, task: str = "a task") -> NewRun:
    return NewRun(
        run_id or str(uuid.uuid4()),
        {"namespace": "default", "task": task, "model": "mcp", "policy": "value",
         "prompt_style": "mcp", "learn": True, "status": "retrieved", "cases_shown": [3, 1]},
        (NewEvent("selection", "value", 0.01, {"shown": [3, 1], "scores": [0.9, 0.5]}),
         NewEvent("note", None, None, {"x": 1})),
    )  # fmt: skip


class SlowLog(RunLog):
    """A real run log whose transactions each take `pause` seconds longer, counting them."""

    def __init__(self, memory: CaseMemory, pause: float) -> None:
        super().__init__(memory.engine)
        self.pause = pause
        self.sizes: list[int] = []
        self.release = threading.Event()
        self.release.set()

    def record(self, runs: Any) -> None:
        self.sizes.append(len(runs))
        self.release.wait()
        time.sleep(self.pause)
        super().record(runs)


def test_record_writes_the_run_and_its_numbered_events(memory: CaseMemory) -> None:
    heard: list[str] = []
    log = memory.run_log(lambda kind, _data: heard.append(kind))
    log.record([_run("r1", task="bad \udcff bytes"), _run("r2")])
    row = log.get("r1")
    assert row.status == "retrieved" and row.cases_shown == [3, 1] and row.cases_used == []
    assert row.task == "bad \ufffd bytes" and row.prompt_tokens == 0
    events = log.events("r1")
    assert [(e.seq, e.kind, e.name) for e in events] == [(1, "selection", "value"),
                                                         (2, "note", None)]  # fmt: skip
    assert events[0].data == {"shown": [3, 1], "scores": [0.9, 0.5]}
    assert events[0].duration_s == pytest.approx(0.01)
    assert heard == ["selection", "note", "selection", "note"]
    log.event("r1", "credit", "plan", reward=1.0)  # appends after the recorded events
    assert [e.seq for e in log.events("r1")] == [1, 2, 3]


def test_concurrent_runs_share_transactions_and_are_committed_on_return(
    memory: CaseMemory, database_url: str, isolated_home: Path
) -> None:
    log = SlowLog(memory, pause=0.03)
    batcher = RunLogBatcher(log)
    # Another process's view of the store: a run must be there the moment `record` returns.
    with _open(isolated_home, database_url) as other:
        reader = other.run_log()

        def client(i: int) -> str:
            run = _run(task=f"task {i}")
            batcher.record(run)
            assert reader.get(run.run_id).task == f"task {i}"
            assert [e.seq for e in reader.events(run.run_id)] == [1, 2]
            return run.run_id

        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(client, range(64)))
    batcher.close()
    assert len(set(ids)) == 64 and sum(log.sizes) == 64
    assert len(log.sizes) <= 16 and max(log.sizes) > 1  # one transaction per run would be 64
    assert batcher.runs == 64 and batcher.transactions == len(log.sizes)


def test_a_bad_run_fails_only_its_own_caller(memory: CaseMemory) -> None:
    memory.run_log().record([_run("taken")])
    log = SlowLog(memory, pause=0.0)
    log.release.clear()  # hold the writer so the three runs below queue into one batch
    batcher = RunLogBatcher(log)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(batcher.record, _run("first"))
        while not log.sizes:  # the writer took "first" and waits on `release`
            time.sleep(0.005)
        queued = [pool.submit(batcher.record, _run(i)) for i in ("ok-1", "taken", "ok-2")]
        while batcher._queue.qsize() < 3:
            time.sleep(0.005)
        log.release.set()
        first.result(timeout=30)
        assert queued[0].result(timeout=30) is None and queued[2].result(timeout=30) is None
        with pytest.raises(IntegrityError):
            queued[1].result(timeout=30)
    batcher.close()
    assert log.sizes == [1, 3, 1, 1, 1]  # the batch of three failed whole, then one by one
    assert {log.get(i).id for i in ("first", "ok-1", "ok-2")} == {"first", "ok-1", "ok-2"}


def test_close_writes_what_is_queued_then_record_writes_at_once(memory: CaseMemory) -> None:
    log = SlowLog(memory, pause=0.0)
    log.release.clear()
    batcher = RunLogBatcher(log)
    runs = [_run() for _ in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        done = [pool.submit(batcher.record, run) for run in runs]
        # The writer holds its first batch; the rest wait in the queue.
        while not log.sizes or log.sizes[0] + batcher._queue.qsize() < 10:
            time.sleep(0.005)
        closing = threading.Thread(target=batcher.close)
        closing.start()
        log.release.set()
        closing.join(timeout=30)
        assert not closing.is_alive()
        assert all(f.result(timeout=30) is None for f in done)
    assert sum(log.sizes) == 10 and all(log.get(r.run_id) for r in runs)
    late = _run()
    batcher.record(late)  # after close: its own transaction, no thread left to wait on
    assert log.get(late.run_id).id == late.run_id and log.sizes[-1] == 1
    assert batcher._thread is None


CHILD = """
import sys, threading, uuid
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory
from memory_agent.store.run_log import NewEvent, NewRun
from memory_agent.store.run_log_batch import RunLogBatcher

memory = CaseMemory(Settings(), database_url=sys.argv[1])
batcher = RunLogBatcher(memory.run_log())
out = threading.Lock()

def client():
    while True:
        run = NewRun(str(uuid.uuid4()), {"namespace": "default", "task": "t", "model": "mcp",
                     "policy": "value", "prompt_style": "mcp", "learn": True,
                     "status": "retrieved", "cases_shown": [1]},
                     (NewEvent("selection", "value", 0.0, {"shown": [1]}),))
        batcher.record(run)
        with out:  # acknowledged: only now may anyone learn the id
            sys.stdout.write(run.run_id + "\\n")
            sys.stdout.flush()

for _ in range(8):
    threading.Thread(target=client, daemon=True).start()
threading.Event().wait()
"""


def test_a_killed_process_loses_no_acknowledged_run(
    database_url: str, isolated_home: Path, memory: CaseMemory
) -> None:
    source = str(Path(memory_agent.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, str(TESTS)])}
    acknowledged = []
    with subprocess.Popen([sys.executable, "-c", CHILD, database_url], env=env,
                          stdout=subprocess.PIPE, text=True) as child:  # fmt: skip
        assert child.stdout is not None
        try:
            for line in child.stdout:
                acknowledged.append(line.strip())
                if len(acknowledged) == 300:
                    break
            child.send_signal(signal.SIGKILL)  # mid-stream: batches are in flight
            acknowledged += [line.strip() for line in child.stdout]  # printed before the kill
        finally:
            child.kill()
    assert len(acknowledged) >= 300
    log = memory.run_log()
    missing = [run_id for run_id in acknowledged if not log.events(run_id)]
    assert missing == []
    assert all(log.get(run_id).status == "retrieved" for run_id in acknowledged[:50])


def test_outcomes_right_after_concurrent_retrieves_find_their_runs(
    database_url: str, isolated_home: Path
) -> None:
    """Each client reports its outcome, the moment its retrieve returns, to another process's
    service over the same store (another worker of the server)."""
    settings = Settings(home=isolated_home, policy={"name": "value", "k": 2})
    embedder: Any = HashEmbedder()
    with (
        CaseMemory(settings, embedder=embedder, database_url=database_url) as mine,
        CaseMemory(settings, embedder=embedder, database_url=database_url) as theirs,
        MemoryService(settings, memory=mine, embed_batch_size=16) as service,
        MemoryService(settings, memory=theirs) as other,
    ):
        mine.add_many([NewCase(f"case {i}", answer=str(i), reward=1.0) for i in range(20)])

        def client(i: int) -> dict[str, Any]:
            found = service.retrieve(f"case {i}")
            assert len(found["cases"]) == 2
            for case in found["cases"]:  # the text came with the shortlist: the stored one
                stored = mine.get(case["case_id"])
                assert (case["task"], case["answer"]) == (stored.task, stored.answer)
            return other.report_outcome(found["retrieval_id"], 1.0, [found["cases"][0]["case_id"]])

        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(client, range(20)))
        assert [o["reward"] for o in outcomes] == [1.0] * 20
        assert all(o["learned"][0]["visits"] >= 1 for o in outcomes)
