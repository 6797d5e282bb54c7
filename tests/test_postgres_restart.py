"""PostgreSQL restarted under load: worker processes keep writing to one store while the
test restarts the server (a fast restart that disconnects every client, then a crash-like
immediate stop with the server down for a moment). Writers carry on after it: an operation
caught by the restart either succeeds (the store reconnects) or fails with a clear
StoreConnectionError, never a raw driver error; nothing acknowledged is lost, nothing is
half-applied or duplicated, every index matches the database, and the store works after."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import _as_postgres, _free_port, find_bin_dir

from memory_agent.evals.load_benchmark import LoadConfig, run_load_benchmark
from memory_agent.evals.load_journal import Tail
from memory_agent.evals.load_worker import HashEmbedder
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


class RestartableServer:
    """A throwaway PostgreSQL server of this test's own (the session's shared one must not
    go down under other tests), which the test can stop and start again on the same port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="memory-agent-pg-restart-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")  # fmt: skip
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(_as_postgres([str(self.bin / tool), *args]), check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                  "-c max_connections=200")  # fmt: skip

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def close(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                                     "immediate", "stop"]), capture_output=True)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[RestartableServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            raise RuntimeError("PostgreSQL binaries not found; CI must run this test")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    running = RestartableServer(bin_dir)
    try:
        yield running
    finally:
        running.close()


def _restart_when_busy(
    server: RestartableServer, folder: Path, processes: int, at: list[int], log: list[str]
) -> None:
    """Restart the server each time the workers' acknowledged operations pass a mark."""
    tails = [Tail(folder / f"journal-{n}.jsonl") for n in range(processes)]
    progress = 0
    deadline = time.monotonic() + 600
    for number, mark in enumerate(at):
        while progress < mark and time.monotonic() < deadline:
            progress += sum(1 for t in tails for e in t.read() if e["t"] in ("ack", "err"))
            time.sleep(0.02)
        if number % 2 == 0:
            server.stop("fast")  # disconnects every client mid-transaction
            server.start()
            log.append(f"fast restart at {progress}")
        else:
            server.stop("immediate")  # as if the server crashed
            time.sleep(1.5)  # down for a while: clients must wait for it, not give up at once
            server.start()
            log.append(f"immediate stop, 1.5 s down, start at {progress}")


def test_writers_carry_on_through_a_server_restart(
    server: RestartableServer, isolated_home: Path, tmp_path: Path
) -> None:
    url = _database(server, "restart")
    folder = tmp_path / "load"
    config = LoadConfig(processes=3, ops=150, kills=0, import_cases=32, seed=11, check_wait=120)
    log: list[str] = []
    restarter = threading.Thread(
        target=_restart_when_busy, args=(server, folder, 3, [120, 300], log), daemon=True
    )
    restarter.start()
    result = run_load_benchmark(url, folder, config, Settings(home=isolated_home), lambda _m: None)
    restarter.join(timeout=60)
    assert len(log) == 2, log
    details = result["details"]
    # Caught by a restart, an operation may fail, but only with the store's clear error.
    errors = details["error_samples"]
    assert all(e["kind"] == "StoreConnectionError" and e["clear"] for e in errors), errors
    assert all("database server" in e["msg"] for e in errors), errors
    assert result["unclear_errors"] == 0 and details["crashes"] == []
    assert result["lost"] == 0, details["lost"]
    assert result["duplicated"] == 0
    assert details["phantom"] == [] and details["lost_updates"] == []
    assert details["shared_cases"] == 32
    assert result["invariants"]["indexes_in_step"], (
        details["worker_index_checks"], details["observer_index_check"]
    )  # fmt: skip
    # Nearly everything went through: the store reconnects rather than failing for good.
    assert result["ops"] >= 3 * 150 - 20, (result["ops"], errors)
    # And the store works afterwards.
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(), database_url=url) as m:
        case = m.add("written after the restarts", namespace="team-a")
        assert m.search("written after the restarts", 1, namespace="team-a")[0].case.id == case.id


def test_an_operation_waits_for_a_server_that_comes_back(
    server: RestartableServer, isolated_home: Path
) -> None:
    url = _database(server, "waits")
    settings = Settings(home=isolated_home)
    with CaseMemory(settings, embedder=HashEmbedder(), database_url=url) as memory:
        memory.add("stored before the stop", namespace="team-a")
        server.stop("immediate")
        back = threading.Timer(2.0, server.start)
        back.start()
        started = time.monotonic()
        try:
            # The pooled connection is dead and the server refuses new ones for 2 s: the
            # store keeps trying and the operation succeeds once the server is back.
            case = memory.add("stored after the restart", namespace="team-a")
        finally:
            back.join()
        assert time.monotonic() - started >= 1.5
        assert memory.get(case.id, namespace="team-a").task == "stored after the restart"
        assert memory.count("team-a") == 2


def test_a_server_that_stays_down_gives_a_clear_error(
    server: RestartableServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_agent.errors import StoreConnectionError
    from memory_agent.store import database

    monkeypatch.setattr(database, "_RECONNECT_FOR_S", 1.0)
    url = _database(server, "down")
    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(), database_url=url) as m:
        m.add("stored before the stop", namespace="team-a")
        server.stop("fast")
        try:
            with pytest.raises(StoreConnectionError, match="Lost the connection to the database"):
                m.add("never stored", namespace="team-a")
        finally:
            server.start()
        # Back up: the same store carries on, and the failed add left nothing behind.
        assert [c.task for c in m.list_cases("team-a")] == ["stored before the stop"]


def _database(server: RestartableServer, name: str) -> str:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
                         autocommit=True) as conn:  # fmt: skip
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server.url}/{name}"
