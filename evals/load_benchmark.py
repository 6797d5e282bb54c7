"""`memory-agent bench load`: many processes on one store, some killed at random moments.

`processes` workers (evals/load_worker.py) each run `ops` mixed operations (add, search,
feedback on shared cases, delete of their own cases, import of one shared file) against one
store. While they run, the benchmark SIGKILLs a random worker `kills` times, at moments spread
over the run (a random point of the total progress, then wherever that worker happens to be:
inside a transaction, between commit and index, while opening the store) and restarts it; the
restarted worker carries on with the operations it has left. An observer in this process
keeps a long-lived store open and measures how long after a writer's acknowledgment each new
case becomes searchable here (`sync_delay_ms`).

When all are done, the workers compare their long-lived indexes with the database, and the
checks of evals/load_checks.py run on a freshly opened store against what the journals say
was acknowledged.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from memory_agent.evals.load_checks import check_store, in_step, integrity
from memory_agent.evals.load_journal import Tail, read_history
from memory_agent.evals.load_worker import HashEmbedder, import_lines
from memory_agent.settings import Settings

Say = Callable[[str], None]
# A worker that dies on its own (not by our kill) this many times in a row without making
# progress is broken, not unlucky: stop rather than restart it forever.
_MAX_CRASHES = 3


@dataclass
class LoadConfig:
    processes: int = 8
    ops: int = 5000
    kills: int = 50
    import_cases: int = 64
    seed: int = 0
    check_wait: float = 600.0


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    progress: int = 0
    done: bool = False
    crashes: int = 0
    crash_log: list[str] = field(default_factory=list)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": round(float(array.max()), 2),
    }


class _Observer:
    """A long-lived store in this process: when does each acknowledged add become searchable
    here? (It syncs as a searching process would, at most every `index_sync_interval`.)"""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self.pending: dict[int, tuple[float, str]] = {}
        self.delays: list[float] = []

    def acked(self, event: dict[str, Any]) -> None:
        if event["op"] == "add":
            self.pending[int(event["ids"][0])] = (float(event["wall"]), event["ns"])
        elif event["op"] == "delete":
            self.pending.pop(int(event["ids"][0]), None)

    def poll(self) -> None:
        from memory_agent.errors import StoreConnectionError

        if not self.pending:
            return
        try:
            self._poll()
        except StoreConnectionError:
            pass  # the server is restarting (test_postgres_restart): look again next time

    def _poll(self) -> None:
        self.memory.sync()
        now = time.time()
        by_ns: dict[str, list[int]] = {}
        for case_id, (_wall, ns) in self.pending.items():
            by_ns.setdefault(ns, []).append(case_id)
        for ns, ids in by_ns.items():
            index = self.memory._indexes.get(ns)
            if index is None:
                continue
            allowed = np.asarray(ids, dtype=np.int64)
            query = np.ones((1, index.dim), dtype=np.float32) / np.sqrt(index.dim)
            _scores, found = index.search(query, len(allowed), allowed)
            for case_id in (int(i) for i in found[0] if i >= 0):
                wall, _ns = self.pending.pop(case_id)
                self.delays.append(max(0.0, now - wall) * 1000)

    def finish(self, wait: float = 10.0) -> None:
        """After the run: the last adds still count, then drop the cases that are not live
        (a kill interrupted their delete, which may have committed); what is left was never
        seen."""
        from sqlalchemy import select

        from memory_agent.store.models import CaseRow

        deadline = time.monotonic() + wait
        while self.pending and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.02)
        if self.pending:
            with self.memory.engine.connect() as conn:
                live = set(
                    conn.scalars(
                        select(CaseRow.id).where(
                            CaseRow.id.in_(list(self.pending)), CaseRow.deleted_at.is_(None)
                        )
                    )
                )
            self.pending = {i: v for i, v in self.pending.items() if i in live}


def run_load_benchmark(
    url: str, folder: Path, config: LoadConfig, settings: Settings, say: Say
) -> dict[str, Any]:
    """Run the load on the store at `url` (empty or new), with journals etc. in `folder`."""
    from memory_agent.store import CaseMemory

    folder.mkdir(parents=True, exist_ok=True)
    import_file = folder / "shared.jsonl"
    import_file.write_text(
        "".join(json.dumps(line) + "\n" for line in import_lines(config.import_cases)),
        encoding="utf-8",
    )
    for stale in folder.glob("journal-*.jsonl"):
        stale.unlink()
    (folder / "check").unlink(missing_ok=True)
    spec = {
        "url": url,
        "home": str(settings.home),
        "folder": str(folder),
        "ops": config.ops,
        "seed": config.seed,
        "import_file": str(import_file),
        "import_cases": config.import_cases,
        "check_wait": config.check_wait,
    }
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    # Created (and migrated) here first: the workers then race on the data, not on the schema.
    observer = _Observer(CaseMemory(settings, embedder=HashEmbedder(), database_url=url))
    try:
        run = _drive(spec_path, folder, config, observer, say)
        observer.finish()
        observer.memory.sync(force=True)
        observer_check = _index_check(observer.memory)
    finally:
        observer.memory.close()
    history = read_history(folder, config.processes)
    opened = time.perf_counter()
    with CaseMemory(settings, embedder=HashEmbedder(), database_url=url) as fresh:
        open_ms = (time.perf_counter() - opened) * 1000
        store = check_store(fresh, history, config.import_cases)
        problems = integrity(fresh)
    return _result(config, run, history, store, problems, open_ms, observer, observer_check)


def _index_check(memory: Any) -> dict[str, Any]:
    from memory_agent.evals.load_worker import index_vs_database

    return index_vs_database(memory)


def _start(spec: Path, number: int, folder: Path) -> _Worker:
    stderr = (folder / f"worker-{number}.stderr").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "memory_agent.evals.load_worker", str(spec), str(number)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    return _Worker(number, process, stderr)


def _drive(
    spec: Path, folder: Path, config: LoadConfig, observer: _Observer, say: Say
) -> dict[str, Any]:
    """Start the workers, kill and restart them on schedule, wait for all to finish."""
    rng = random.Random(config.seed)
    total = config.processes * config.ops
    # Kill points spread over the run's progress (5%..95% of all operations).
    points = sorted(rng.uniform(0.05, 0.95) * total for _ in range(config.kills))
    kills: list[dict[str, Any]] = []
    tails = [Tail(folder / f"journal-{n}.jsonl") for n in range(config.processes)]
    started = time.perf_counter()
    workers = [_start(spec, n, folder) for n in range(config.processes)]
    last_say = started
    crashes: list[dict[str, Any]] = []
    try:
        while True:
            for worker, tail in zip(workers, tails, strict=True):
                for event in tail.read():
                    if event["t"] in ("ack", "err"):
                        worker.progress += 1
                        worker.crashes = 0
                        if event["t"] == "ack":
                            observer.acked(event)
                    elif event["t"] == "done":
                        worker.done = True
            observer.poll()
            progress = sum(w.progress for w in workers)
            for worker in workers:
                code = worker.process.poll()
                if code is not None and not worker.done:
                    crashes.append(_crashed(worker, folder, code))
                    if worker.crashes >= _MAX_CRASHES:
                        raise RuntimeError(
                            f"load worker {worker.number} died {worker.crashes} times without "
                            f"progress; see {folder / f'worker-{worker.number}.stderr'}"
                        )
                    _restart(workers, worker, spec, folder)
            if points and progress >= points[0]:
                points.pop(0)
                running = [w for w in workers if not w.done and w.process.poll() is None]
                if running:
                    victim = rng.choice(running)
                    # Then wherever it is: a random extra moment so kills do not line up
                    # with this loop's polling.
                    time.sleep(rng.uniform(0.0, 0.03))
                    victim.process.send_signal(signal.SIGKILL)
                    victim.process.wait()
                    kills.append({"worker": victim.number, "progress": progress,
                                  "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
                    _restart(workers, victim, spec, folder)
            if all(w.done for w in workers):
                break
            if time.perf_counter() - last_say > 5:
                last_say = time.perf_counter()
                say(f"  {progress}/{total} operations, {len(kills)}/{config.kills} kills, "
                    f"{time.perf_counter() - started:.0f} s")  # fmt: skip
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        # Everyone is done: let each worker compare its long-lived index with the database.
        (folder / "check").touch()
        for worker in workers:
            try:
                worker.process.wait(timeout=config.check_wait)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            worker.stderr.close()
    return {
        "seconds": elapsed,
        "kills": kills,
        "kills_planned": config.kills,
        "crashes": crashes,
        "exit_codes": [w.process.returncode for w in workers],
    }


def _crashed(worker: _Worker, folder: Path, code: int) -> dict[str, Any]:
    worker.crashes += 1
    log = (folder / f"worker-{worker.number}.stderr").read_text(errors="replace")
    return {"worker": worker.number, "exit_code": code, "stderr_tail": log[-2000:]}


def _restart(workers: list[_Worker], worker: _Worker, spec: Path, folder: Path) -> None:
    worker.stderr.close()
    fresh = _start(spec, worker.number, folder)
    fresh.progress, fresh.crashes = worker.progress, worker.crashes
    workers[worker.number] = fresh


def _result(
    config: LoadConfig,
    run: dict[str, Any],
    history: Any,
    store: dict[str, Any],
    problems: list[str],
    open_ms: float,
    observer: _Observer,
    observer_check: dict[str, Any],
) -> dict[str, Any]:
    all_ms = [ms for values in history.latencies.values() for ms in values]
    acked = len(history.acked)
    worker_checks = {str(n): c for n, c in sorted(history.checks.items())}
    indexes_ok = (
        len(history.checks) == config.processes
        and all(in_step(c) for c in history.checks.values())
        and in_step(observer_check)
        and in_step(store["fresh_index"])
    )
    unclear = [e for e in history.errors if not e.get("clear")]
    invariants = {
        "no_lost_acknowledged_writes": not store["lost"],
        "no_duplicates": store["duplicated"] == 0,
        "no_phantom_writes": store["phantom_count"] == 0,
        "no_lost_updates": store["lost_update_count"] == 0,
        "indexes_in_step": indexes_ok,
        "store_opens_clean": not problems,
        "all_synced": not observer.pending,
        "no_errors": not history.errors and not run["crashes"],
    }
    return {
        "workload": {
            "processes": config.processes,
            "ops_per_process": config.ops,
            "import_cases": config.import_cases,
            "seed": config.seed,
            "mix": "add 35%, search 35%, outcome 15%, delete 10%, import 5% "
            "(each worker's first operation is the shared import)",
        },
        "ok": all(invariants.values()),
        "invariants": invariants,
        "lost": len(store["lost"]),
        "duplicated": store["duplicated"],
        "errors": len(history.errors) + len(run["crashes"]),
        "unclear_errors": len(unclear),
        "ops": acked,
        "seconds": round(run["seconds"], 2),
        "ops_per_s": round(acked / run["seconds"], 1) if run["seconds"] else None,
        "p50_ms": percentiles(all_ms)["p50"],
        "p95_ms": percentiles(all_ms)["p95"],
        "per_op_ms": {op: percentiles(values) for op, values in sorted(history.latencies.items())},
        "sync_delay_ms": {**percentiles(observer.delays), "never_seen": len(observer.pending)},
        "kills": len(run["kills"]),
        "interrupted_ops": _count_ops(history.in_flight),
        "restart_open_ms": percentiles(history.open_ms),
        "fresh_open_ms": round(open_ms, 1),
        "details": {
            "lost": store["lost"][:20],
            "phantom": store["phantom"],
            "lost_updates": store["lost_updates"],
            "live_cases": store["live_cases"],
            "shared_cases": store["shared_cases"],
            "feedback_acknowledged": store["feedback_acknowledged"],
            "feedback_interrupted": store["feedback_interrupted"],
            "integrity_problems": problems,
            "error_samples": history.errors[:20],
            "crashes": run["crashes"][:5],
            "worker_index_checks": worker_checks,
            "observer_index_check": observer_check,
            "fresh_index_check": store["fresh_index"],
            "kill_log": run["kills"],
        },
    }


def _count_ops(in_flight: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in in_flight:
        counts[item["op"]] = counts.get(item["op"], 0) + 1
    return dict(sorted(counts.items()))


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of `server_url` for one run, dropped
    afterwards: the benchmark never writes into a store someone uses."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    name = f"memory_agent_load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database=base.database or "postgres"),
                          isolation_level="AUTOCOMMIT")  # fmt: skip
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
