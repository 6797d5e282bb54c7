"""Hostile and broken input ends in a clear error with the right exit code, never a traceback
and never a silent success: imported statistics, undecodable text in the run log, a corrupt
database file, a URL that means a throwaway in-memory database, a run or an evaluation in
which everything failed."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hash_embedder import HashEmbedder
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.errors import (
    ImportFileError,
    InvalidInputError,
    RunFailedError,
    StoreConnectionError,
    StoreCorruptError,
)
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase, StageStats

REPO = Path(__file__).resolve().parent.parent
GAIA_SAMPLE = REPO / "tests" / "data" / "gaia" / "validation"


@pytest.fixture
def store(isolated_home: Path) -> Any:
    memory = CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder())  # type: ignore[arg-type]
    memory.add("an honest case", reward=0.5)
    yield memory
    memory.close()


def _no_traceback(result: Any) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )


# ---------------------------------------------------------------- 5. imported statistics

BAD_STATS_LINES = [
    ({"task": "t1", "stats": {"plan": {"visits": -7, "q_value": 0.5}}}, "visits"),
    ({"task": "t2", "stats": {"plan": {"visits": 3, "q_value": 1e308}}}, "q_value"),
    ({"task": "t3", "stats": {"Bad Stage! ☃": {"visits": 1, "q_value": 0.1}}}, "stage name"),
    ({"task": "t4", "stats": [1, 2]}, "stats must be an object"),
    ({"task": "t5", "stats": {"plan": {"visits": 1e20, "q_value": 0.1}}}, "visits"),
    ({"task": "t6", "stats": {"plan": {"visits": 2, "q_value": 0.1, "last_reward": 9}}},
     "last_reward"),
    ({"task": "t7", "stats": {"plan": {"visits": 1, "q_value": 0.1, "reward_sum": 40.0}}},
     "reward_sum"),
    ({"task": "t8", "stats": {"plan": [3, 0.5]}}, "must be an object"),
    ({"task": "t9", "stats": {"plan": {"visits": "3", "q_value": 0.1}}}, "number"),
]  # fmt: skip


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(("row", "message"), BAD_STATS_LINES)
def test_imported_statistics_out_of_range_are_refused_per_line(
    store: CaseMemory, tmp_path: Path, row: dict[str, Any], message: str
) -> None:
    good = json.dumps({"task": "a good case", "stats": {"plan": {"visits": 2, "q_value": 0.4}}})
    path = _write(tmp_path / "cases.jsonl", [good, json.dumps(row, ensure_ascii=False)])
    with pytest.raises(ImportFileError, match=message) as caught:
        store.import_file(path)
    assert [n for n, _ in caught.value.problems] == [2]
    assert store.count() == 1  # all-or-nothing: not even the good line


@pytest.mark.parametrize("q", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_statistics_are_refused(store: CaseMemory, tmp_path: Path, q: str) -> None:
    path = _write(tmp_path / "cases.jsonl", ['{"task": "t", "stats": {"plan": {"visits": 1, '
                                             f'"q_value": {q}}}}}}}'])  # fmt: skip
    with pytest.raises(ImportFileError, match="finite"):
        store.import_file(path)


def test_cli_import_of_bad_statistics_exits_2_naming_each_line(
    isolated_home: Path, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "cases.jsonl",
        [json.dumps(row, ensure_ascii=False) for row, _ in BAD_STATS_LINES]
        + ['{"task": "t", "stats": {"plan": {"visits": 1, "q_value": NaN}}}'],
    )
    result = CliRunner().invoke(app, ["memory", "import", str(path)])
    _no_traceback(result)
    assert result.exit_code == 2, result.output
    assert "nothing was imported" in result.output
    assert "line 1:" in result.output and "line 3:" in result.output


def test_api_statistics_are_checked_too(store: CaseMemory) -> None:
    for stats in (
        {"plan": StageStats(-7, 0.5, 0.0, None)},
        {"plan": StageStats(1, float("nan"), 0.0, None)},
        {"Bad Stage! ☃": StageStats(1, 0.5, 0.5, 0.5)},
    ):
        with pytest.raises(InvalidInputError):
            store.add_many([NewCase(task="x", stats=stats)])  # type: ignore[arg-type]
    assert store.count() == 1


def test_valid_statistics_still_round_trip(store: CaseMemory, tmp_path: Path) -> None:
    row = {"task": "kept", "stats": {"plan": {"visits": 4, "q_value": -0.25, "reward_sum": -1.0,
                                              "last_reward": 0.0}, "refine-2": {"visits": 0,
                                              "q_value": 0.0}}}  # fmt: skip
    report = store.import_file(_write(tmp_path / "ok.jsonl", [json.dumps(row)]))
    assert report.added == 1
    case = store.list_cases()[0]
    assert case.stats["plan"] == StageStats(4, -0.25, -1.0, 0.0)


# ---------------------------------------------------------------- 6. clear errors


def test_run_log_takes_text_with_lone_surrogates(store: CaseMemory) -> None:
    log = store.run_log()
    bad = "what is \udcff\udcfe?"
    log.start("run-1", task=bad, namespace="default", model="m", policy="none",
              prompt_style="code", learn=False)  # fmt: skip
    log.event("run-1", "llm", "model \ud800", reply=bad, nested={"k": [bad]})
    log.finish("run-1", status="error", error=bad, answer=bad)
    row = log.get("run-1")
    assert row.task == "what is \ufffd\ufffd?" and row.error == row.task
    event = log.events("run-1")[0]
    assert event.name == "model \ufffd" and event.data["nested"] == {"k": [row.task]}


def test_cli_run_with_an_undecodable_task_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["run", "bad bytes \udcff here", "--policy", "none"])
    _no_traceback(result)
    assert result.exit_code == 2 and "not valid UTF-8" in result.output


def _stored_file(home: Path) -> Path:
    memory = CaseMemory(Settings(home=home), embedder=HashEmbedder())  # type: ignore[arg-type]
    memory.add_many([NewCase(task=f"case {i} " + "x" * 500) for i in range(300)])
    memory.close()
    path = home / "memory.db"
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return path


@pytest.mark.parametrize("where", ["pages", "header"])
def test_a_corrupt_database_file_is_a_clear_error(isolated_home: Path, where: str) -> None:
    path = _stored_file(isolated_home)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(5)
    if where == "header":
        data[:100] = rng.integers(0, 256, 100, dtype=np.uint8).tobytes()
    else:  # keep the header and the first page, scramble the rest
        page = int.from_bytes(data[16:18], "big") or 65536
        data[page:] = rng.integers(0, 256, len(data) - page, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="corrupt") as caught:
        CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder())  # type: ignore[arg-type]
    assert "backup" in str(caught.value) and ".recover" in str(caught.value)
    result = CliRunner().invoke(app, ["memory", "list"])
    _no_traceback(result)
    assert result.exit_code == StoreCorruptError.exit_code
    assert "is corrupt" in result.output and "backup" in result.output


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://"])
def test_a_sqlite_url_without_a_file_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(StoreConnectionError, match="in-memory"):
        CaseMemory(Settings(home=tmp_path), database_url=url)
    cases = _write(tmp_path / "cases.jsonl", ['{"task": "lost?"}'])
    result = CliRunner().invoke(app, ["--database-url", url, "memory", "import", str(cases)])
    _no_traceback(result)
    assert result.exit_code == StoreConnectionError.exit_code
    assert "sqlite:///:memory:" in result.output


def test_an_explicit_in_memory_url_is_accepted(tmp_path: Path) -> None:
    with CaseMemory(
        Settings(home=tmp_path),
        embedder=HashEmbedder(),  # type: ignore[arg-type]
        database_url="sqlite:///:memory:",
    ) as memory:
        assert memory.add("kept while open").id > 0


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_run_against_a_dead_endpoint_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_AGENT_LLM_MAX_RETRIES", "0")
    result = CliRunner().invoke(
        app,
        ["run", "What is 2 + 2?", "--model", "some-model", "--base-url", _dead_url(),
         "--policy", "none", "-k", "0", "--no-learn"],
    )  # fmt: skip
    _no_traceback(result)
    assert result.exit_code == RunFailedError.exit_code, result.output
    assert "ended early" in result.output


def test_gaia_eval_where_every_attempt_errored_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORY_AGENT_LLM_MAX_RETRIES", "0")
    result = CliRunner().invoke(
        app,
        ["eval", "gaia", str(GAIA_SAMPLE), "--model", "some-model", "--base-url", _dead_url(),
         "--no-memory", "--limit", "2", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    _no_traceback(result)
    assert result.exit_code == RunFailedError.exit_code, result.output
    assert "All 2 attempt(s) ended with an error" in result.output
