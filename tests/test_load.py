"""`bench load` in small: real worker processes on one store (SQLite file and PostgreSQL),
SIGKILLed at random moments and restarted; afterwards nothing acknowledged is lost or
duplicated, every index matches the database and the store opens clean. Also: the checks
catch a lost, a duplicated and an unindexed case when one is made on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.evals.load_benchmark import LoadConfig, run_load_benchmark
from memory_agent.evals.load_checks import check_store
from memory_agent.evals.load_journal import read_history
from memory_agent.evals.load_worker import HashEmbedder, index_vs_database
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory
from memory_agent.store.models import CaseRow


def _quiet(_message: str) -> None:
    pass


def test_killed_workers_lose_and_duplicate_nothing(
    database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    config = LoadConfig(processes=3, ops=120, kills=4, import_cases=32, seed=7, check_wait=120)
    result = run_load_benchmark(
        database_url, tmp_path / "load", config, Settings(home=isolated_home), _quiet
    )
    details = result["details"]
    assert result["kills"] == 4
    assert result["ops"] == 3 * 120  # every operation acknowledged, after the restarts too
    assert result["lost"] == 0, details["lost"]
    assert result["duplicated"] == 0
    assert result["errors"] == 0, details["error_samples"] or details["crashes"]
    assert details["phantom"] == [] and details["lost_updates"] == []
    # The shared file was imported by every worker, at once at the start: stored once.
    assert details["shared_cases"] == 32
    assert details["feedback_acknowledged"] > 0
    assert set(details["worker_index_checks"]) == {"0", "1", "2"}
    for check in details["worker_index_checks"].values():
        assert check["missing"] == {} and check["extra"] == {}, check
    assert details["integrity_problems"] == []
    assert all(result["invariants"].values()), result["invariants"]
    assert result["sync_delay_ms"]["n"] > 0 and result["sync_delay_ms"]["never_seen"] == 0


def test_the_checks_catch_a_lost_a_duplicated_and_an_unindexed_case(
    isolated_home: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    folder = tmp_path / "load"
    config = LoadConfig(processes=2, ops=40, kills=0, import_cases=16, seed=3, check_wait=120)
    settings = Settings(home=isolated_home)
    assert run_load_benchmark(url, folder, config, settings, _quiet)["ok"]
    history = read_history(folder, 2)
    added = [a.ids[0] for a in history.acked if a.op == "add"]
    with CaseMemory(settings, embedder=HashEmbedder(), database_url=url) as memory:
        live = {c.id for ns in ("team-a", "team-b") if ns in memory.namespaces()
                for c in memory.list_cases(ns, limit=1000)}  # fmt: skip
        gone, copied = [i for i in added if i in live][:2]
        with memory.engine.begin() as conn:
            row = conn.execute(select(CaseRow).where(CaseRow.id == copied)).mappings().one()
            conn.execute(insert(CaseRow).values({k: v for k, v in row.items() if k != "id"}))
            conn.execute(delete(CaseRow).where(CaseRow.id == gone))
        found = check_store(memory, history, config.import_cases)
        assert [lost for lost in found["lost"] if lost.get("add") == gone] == [
            {"add": gone, "worker": _worker_of(history, gone), "stored": False}
        ]
        assert found["duplicated"] == 1
        # The fresh index was built before the tampering: it lacks the copy, holds the gone.
        assert found["fresh_index"]["missing"] and found["fresh_index"]["extra"]
        # A case the database holds live but a process's index lacks.
        some = next(i for i in added if i in live and i not in (gone, copied))
        ns = _ns_of(memory, some)
        memory._indexes[ns].remove(np.asarray([some], dtype=np.int64))
        assert some in index_vs_database(memory)["missing"][ns]


def _worker_of(history: object, case_id: int) -> int:
    return next(a.worker for a in history.acked if a.op == "add" and a.ids == [case_id])  # type: ignore[attr-defined]


def _ns_of(memory: CaseMemory, case_id: int) -> str:
    with memory.engine.connect() as conn:
        return str(conn.scalar(select(CaseRow.namespace).where(CaseRow.id == case_id)))


def test_bench_load_command_prints_the_figures(isolated_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "load", "--processes", "2", "--ops", "30", "--kills", "1", "--out",
         str(tmp_path / "out"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["ok"] and figures["backend"] == "sqlite"
    assert {
        "lost",
        "duplicated",
        "errors",
        "p50_ms",
        "p95_ms",
        "sync_delay_ms",
        "ops_per_s",
    } <= set(figures)
    assert figures["lost"] == figures["duplicated"] == figures["errors"] == 0
    assert json.loads((tmp_path / "out" / "result.json").read_text())["ops"] == 60


def test_bench_load_on_postgresql_without_a_server_url_says_how(isolated_home: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "load", "--backend", "postgresql", "--ops", "1"])
    assert result.exit_code == 2
    assert "--database-url postgresql+psycopg://" in result.output
