"""Bad input: a clear error that says how to fix it, and nothing already stored is lost."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from memory_agent.errors import (
    EmbedderError,
    ImportFileError,
    InvalidInputError,
    StoreConnectionError,
    UnknownNamespaceError,
)
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase


@pytest.fixture
def seeded(memory: CaseMemory) -> CaseMemory:
    memory.add_many([NewCase(task="What is 2 + 2?", reward=1.0), NewCase(task="Name a colour.")])
    return memory


def assert_untouched(memory: CaseMemory) -> None:
    assert memory.count() == 2
    assert {c.task for c in memory.list_cases()} == {"What is 2 + 2?", "Name a colour."}


@pytest.mark.parametrize("task", ["", "   ", "\n\t "])
def test_empty_or_whitespace_task(seeded: CaseMemory, task: str) -> None:
    with pytest.raises(InvalidInputError, match="empty or only whitespace"):
        seeded.add(task)
    assert_untouched(seeded)


def test_one_bad_case_in_a_batch_stores_nothing(seeded: CaseMemory) -> None:
    with pytest.raises(InvalidInputError, match="case 2 of 3: task is empty"):
        seeded.add_many([NewCase(task="ok"), NewCase(task=" "), NewCase(task="also ok")])
    assert_untouched(seeded)


def test_megabyte_long_task(seeded: CaseMemory) -> None:
    with pytest.raises(InvalidInputError, match=r"1,048,576 characters; the limit is 32,768") as e:
        seeded.add("x" * 1024 * 1024)
    assert "MEMORY_AGENT_MAX_TASK_CHARS" in str(e.value)
    with pytest.raises(InvalidInputError, match="plan is"):
        seeded.add("fine", plan="y" * 1024 * 1024)
    assert_untouched(seeded)


def test_broken_unicode_and_nul(seeded: CaseMemory) -> None:
    broken = b"caf\xe9".decode("utf-8", errors="surrogateescape")
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        seeded.add(broken)
    with pytest.raises(InvalidInputError, match="NUL"):
        seeded.add("a\x00b")
    assert_untouched(seeded)


@pytest.mark.parametrize("reward", [float("nan"), 2.0, "high", True])
def test_bad_reward(seeded: CaseMemory, reward: object) -> None:
    with pytest.raises(InvalidInputError, match="reward must be"):
        seeded.add("task", reward=reward)  # type: ignore[arg-type]
    assert_untouched(seeded)


def test_non_json_trajectory(seeded: CaseMemory) -> None:
    with pytest.raises(InvalidInputError, match="JSON-serialisable"):
        seeded.add("task", trajectory={"when": object()})
    assert_untouched(seeded)


def test_import_with_non_utf8_bytes(seeded: CaseMemory, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"task": "good one"}\n{"task": "caf\xe9 au lait"}\n{"task": "good two"}\n')
    with pytest.raises(ImportFileError, match=r"line 2: not UTF-8 \(byte 0xe9 at column 14\)"):
        seeded.import_file(bad)
    assert_untouched(seeded)


def test_import_with_malformed_line_is_all_or_nothing(seeded: CaseMemory, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "good one"}\n{"task": "unterminated\n[1, 2]\n{"task": "good two"}\n')
    with pytest.raises(ImportFileError) as info:
        seeded.import_file(bad)
    message = str(info.value)
    assert "line 2: not valid JSON" in message
    assert "line 3: expected a JSON object" in message
    assert "nothing was imported" in message and "--skip-invalid" in message
    assert [n for n, _ in info.value.problems] == [2, 3]
    assert_untouched(seeded)
    report = seeded.import_file(bad, skip_invalid=True)
    assert report.added == 2 and [n for n, _ in report.invalid] == [2, 3]
    assert seeded.count() == 4


def test_memento_file_imported_as_jsonl_says_which_format(
    seeded: CaseMemory, memento_sample: Path
) -> None:
    with pytest.raises(ImportFileError, match="use --format memento"):
        seeded.import_file(memento_sample)
    assert_untouched(seeded)


def test_memento_line_with_bad_label(seeded: CaseMemory, tmp_path: Path) -> None:
    bad = tmp_path / "bank.jsonl"
    bad.write_text(json.dumps({"case": "q", "plan": "p", "case_label": "maybe"}) + "\n")
    with pytest.raises(ImportFileError, match='line 1: case_label must be "positive"'):
        seeded.import_file(bad, fmt="memento")
    assert_untouched(seeded)


def test_wrong_embedding_dimension(seeded: CaseMemory) -> None:
    with pytest.raises(InvalidInputError, match="dimension 12, but this store holds 384"):
        seeded.search(np.ones(12, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="dimension 12"):
        seeded.add("new", embedding=np.ones(12, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="NaN"):
        seeded.search(np.full(384, np.nan, dtype=np.float32))
    assert_untouched(seeded)


def test_embedder_of_another_size_is_refused(
    seeded: CaseMemory, database_url: str, tmp_path: Path
) -> None:
    class Wider:
        name = "other-model"
        dim = 768

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 768), dtype=np.float32) / np.sqrt(768)

    seeded.close()
    other = CaseMemory(Settings(home=tmp_path), embedder=Wider(), database_url=database_url)
    try:
        with pytest.raises(EmbedderError, match="holds 384-dimensional vectors"):
            other.add("a task")
        with pytest.raises(EmbedderError, match="export"):
            other.search("a task")
        assert other.count() == 2
    finally:
        other.close()


def test_unknown_namespace(seeded: CaseMemory) -> None:
    with pytest.raises(UnknownNamespaceError, match="'nope' does not exist. Known namespaces: def"):
        seeded.search("What is 2 + 2?", namespace="nope")
    with pytest.raises(UnknownNamespaceError):
        seeded.list_cases("nope")
    with pytest.raises(InvalidInputError, match="Namespace 'a b' is not valid"):
        seeded.add("x", namespace="a b")
    assert_untouched(seeded)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_url_that_does_not_connect(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://user:secret@127.0.0.1:{_closed_port()}/cases"
    with pytest.raises(StoreConnectionError) as info:
        CaseMemory(Settings(home=tmp_path), database_url=url)
    message = str(info.value)
    assert "Could not connect to postgresql+psycopg://user:***@127.0.0.1" in message
    assert "secret" not in message
    assert "MEMORY_AGENT_DATABASE_URL" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("mysql+nodriver://x@localhost/db", "No database driver"),
    ],
)
def test_database_url_that_is_wrong(tmp_path: Path, url: str, expected: str) -> None:
    with pytest.raises(StoreConnectionError, match=expected):
        CaseMemory(Settings(home=tmp_path), database_url=url)


def test_sqlite_file_in_a_place_that_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreConnectionError, match="MEMORY_AGENT_HOME"):
        CaseMemory(Settings(home=tmp_path), database_url=f"sqlite:///{blocker}/sub/cases.db")


@pytest.mark.parametrize(
    "query",
    [object(), {"a": 1}, None, b"bytes", [1.0, "x"], [[1.0, 2.0], [3.0]], 3.5, {1.0, 2.0}],
    ids=["object", "dict", "None", "bytes", "mixed-list", "ragged", "scalar", "set"],
)
def test_a_query_that_is_neither_text_nor_a_vector_is_a_clear_error(
    seeded: CaseMemory, query: object
) -> None:
    """Found by fuzzing: an arbitrary object as the query raised a raw TypeError (or
    ValueError) from numpy; now the store's own error says what a query may be."""
    with pytest.raises(InvalidInputError, match="text .* or a vector of numbers") as refused:
        seeded.search(query)  # type: ignore[arg-type]
    assert f"got {type(query).__name__}" in str(refused.value)  # says what it was given
    with pytest.raises(InvalidInputError, match="a vector of numbers"):
        seeded.candidates(query)  # type: ignore[arg-type]
    if query is not None:  # add's embedding=None means "embed the task"
        with pytest.raises(InvalidInputError, match="a vector of numbers"):
            seeded.add("a new task", embedding=query)  # type: ignore[arg-type]
    assert_untouched(seeded)


@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, 1e308])
def test_a_vector_beyond_float32_range_is_a_clear_error_without_a_warning(
    seeded: CaseMemory, value: float
) -> None:
    """Found by fuzzing: numpy printed "RuntimeWarning: overflow encountered in cast" before
    the store's error. pytest turns warnings into errors here (filterwarnings = error), so a
    warning fails this test."""
    vector = [0.0] * 383 + [value]
    with pytest.raises(InvalidInputError, match="beyond the float32 range"):
        seeded.search(vector)
    with pytest.raises(InvalidInputError, match="beyond the float32 range"):
        seeded.nearest(vector, 2)
    with pytest.raises(InvalidInputError, match="beyond the float32 range"):
        seeded.add("a new task", embedding=vector)
    with pytest.raises(InvalidInputError, match="beyond the float32 range"):
        seeded.add_many([NewCase(task="a new task")], embeddings=[vector])
    assert_untouched(seeded)
