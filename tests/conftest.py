"""Shared fixtures: an isolated data dir, the real MiniLM, and SQLite + PostgreSQL stores."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import find_bin_dir, postgres_server

REPO = Path(__file__).resolve().parent.parent
MEMENTO_SAMPLE = REPO / "tests" / "data" / "memento" / "memory-sample.jsonl"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test imported a root folder (store/, policies/, evals/, cli.py) as a
    top-level module: they exist only as memory_agent.store etc., and `python -m pytest` or a
    stray sys.path entry would make `import store` load a second copy of the same code."""
    leaked = sorted(
        name
        for name in ("store", "policies", "evals", "cli")
        if (module := sys.modules.get(name)) is not None
        and Path(getattr(module, "__file__", None) or "/").resolve().is_relative_to(REPO)
    )
    if leaked:
        sys.stderr.write(f"\nImported from the repository as top-level modules: {leaked}; "
                         "import memory_agent.store etc. instead.\n")  # fmt: skip
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data dir and no stray MEMORY_AGENT_* settings."""
    for key in list(os.environ):
        if key.startswith("MEMORY_AGENT_") and not key.startswith("MEMORY_AGENT_TEST_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("MEMORY_AGENT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def minilm() -> object:
    """The real MiniLM embedder, loaded once per test session."""
    from memory_agent.store import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    """A real PostgreSQL server: $MEMORY_AGENT_TEST_POSTGRES_URL, or one started here."""
    if url := os.environ.get("MEMORY_AGENT_TEST_POSTGRES_URL"):
        yield url.rstrip("/")
        return
    if find_bin_dir() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); CI always runs it")
    with postgres_server() as url:
        yield url


def fresh_postgres_database(base_url: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs against a SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    base: str = request.getfixturevalue("postgres_base_url")
    return fresh_postgres_database(base)


@pytest.fixture
def memory(database_url: str, minilm: object, isolated_home: Path) -> Iterator[object]:
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory

    store = CaseMemory(Settings(home=isolated_home), embedder=minilm, database_url=database_url)  # type: ignore[arg-type]
    yield store
    store.close()


@pytest.fixture
def memento_sample() -> Path:
    """200 real cases from the Memento case bank (MIT, see tests/data/memento/)."""
    return MEMENTO_SAMPLE
