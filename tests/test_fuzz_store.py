"""Property-based fuzzing of the store's public API on a real SQLite file and a real PostgreSQL
database (hypothesis).

Each example is a short sequence of operations with arbitrary inputs (texts with NULs, lone
surrogates and control characters, JSON-ish metadata with NaN, huge numbers and non-JSON
objects, any namespace string, any integer id, any JSONL line, any bytes) against a fresh
store. Every call must either succeed or raise one of memory_agent.errors' clear errors, and
the whole stored content (cases and their statistics) is compared before and after: a failed
call changes nothing; a successful one changes only what it is about (an add adds one case,
an import adds what it reports, a delete tombstones its case, feedback moves only the named
cases' statistics; reads change nothing).

The `ci` profile (CI=1) runs a fixed, bounded number of derandomised examples; set
HYPOTHESIS_PROFILE=deep for a longer search.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hash_embedder import HashEmbedder
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from memory_agent.errors import MemoryAgentError
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase
from memory_agent.store.models import CaseRow, CaseStatRow

settings.register_profile(
    "ci",
    max_examples=80,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Any character Python allows in a str, lone surrogates and NUL included.
ANY_CHAR = st.characters(codec=None, categories=None)
TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(st.sampled_from("ab \t\n\x00\x1b\ud800\u202e\ufeff☃"), max_size=12),
    st.sampled_from(["", " ", "\n", "x" * 40_000, "plain task"]),
)
NAMESPACES = st.one_of(
    st.sampled_from(["default", "team-a", "b.c:d@e", "x" * 128]),
    st.text(ANY_CHAR, max_size=20),
    st.sampled_from(["", "-lead", "x" * 129, "a/b", "ü"]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1e308, -1e308, 2**63, -(2**63) - 1]),
)
JSONISH: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(ANY_CHAR, max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(ANY_CHAR, max_size=6), inner, max_size=3),
    ),
    max_leaves=6,
)
ODD = st.one_of(
    JSONISH,
    st.binary(max_size=8),
    st.just(object()),
    st.sets(st.integers(), max_size=2),
    st.dictionaries(st.integers(), st.none(), max_size=2),  # non-string keys
)
IDS = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**63 - 1, 2**63, -(2**63)]),
)
STATS = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from(["plan", "refine"]), st.text(ANY_CHAR, max_size=6)),
        st.one_of(
            st.fixed_dictionaries(
                {"visits": NUMBERS, "q_value": NUMBERS},
                optional={"reward_sum": NUMBERS, "last_reward": NUMBERS, "extra": JSONISH},
            ),
            ODD,
        ),
        max_size=2,
    ),
    ODD,
)

# Valid values, so that most operations get through to the store's writes and reads.
VALID_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                     max_size=30).filter(str.strip)  # fmt: skip
VALID_NS = st.sampled_from(["default", "team-a", "team-b", "b.c:d@e"])
VALID_META = st.dictionaries(
    st.text(max_size=6),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                           st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
                 lambda inner: st.lists(inner, max_size=3), max_leaves=4),
    max_size=3,
)  # fmt: skip
VALID_STATS = st.dictionaries(
    st.sampled_from(["plan", "refine"]),
    st.integers(0, 20).flatmap(
        lambda n: st.fixed_dictionaries(
            {"visits": st.just(n), "q_value": st.floats(-1, 1)},
            optional={"reward_sum": st.floats(-n, n), "last_reward": st.floats(-1, 1)},
        )
    ),
    max_size=2,
)
# The template's cases: ids 1-4 in "default", 5 and 6 in "team-a".
SMALL_IDS = st.integers(min_value=1, max_value=7)
ID_NS = st.sampled_from(["default", "default", "team-a"])


@st.composite
def one_field_fuzzed(
    draw: st.DrawFn, valid: dict[str, st.SearchStrategy[Any]], fuzz: dict[str, Any]
) -> dict[str, Any]:
    """A valid set of fields, and (more often than not) one of them replaced by fuzz: each
    bad value then meets a call that would otherwise succeed."""
    fields = draw(st.fixed_dictionaries(valid))
    if draw(st.booleans()) or draw(st.booleans()):
        key = draw(st.sampled_from(sorted(fuzz)))
        fields[key] = draw(fuzz[key])
    return fields


def _line(row: dict[str, Any]) -> bytes:
    return json.dumps(row, default=repr).encode("utf-8", "surrogatepass")


ADD = one_field_fuzzed(
    {"op": st.just("add"), "task": VALID_TEXT, "plan": st.one_of(st.none(), VALID_TEXT),
     "meta": VALID_META, "namespace": VALID_NS, "reward": st.one_of(st.none(), st.floats(-1, 1))},
    {"task": st.one_of(TEXTS, ODD), "plan": st.one_of(TEXTS, ODD), "answer": TEXTS,
     "reward": st.one_of(NUMBERS, ODD), "outcome": st.one_of(st.sampled_from(["success", "bad"]),
     ODD), "source": st.one_of(TEXTS, ODD), "meta": ODD, "trajectory": ODD,
     "namespace": NAMESPACES},
)  # fmt: skip
# One line of an import file: a case object with fuzzed fields, any JSON, or any bytes.
GOOD_LINE = st.fixed_dictionaries(
    {"task": VALID_TEXT}, optional={"plan": VALID_TEXT, "stats": VALID_STATS, "meta": VALID_META}
).map(_line)
BAD_LINE = st.one_of(
    one_field_fuzzed(
        {"task": VALID_TEXT},
        {"task": st.one_of(TEXTS, ODD), "plan": st.one_of(TEXTS, ODD), "stats": STATS,
         "namespace": st.one_of(NAMESPACES, ODD), "reward": ODD, "meta": ODD, "id": ODD,
         "created_at": ODD, "surprise": ODD},
    ).map(_line),
    JSONISH.map(lambda value: json.dumps(value).encode("utf-8")),
    st.binary(max_size=30),
    st.fixed_dictionaries(
        {"case": TEXTS, "plan": TEXTS, "case_label": st.sampled_from(["positive", "x"])}
    ).map(_line),
)  # fmt: skip
IMPORT = one_field_fuzzed(
    {"op": st.just("import"), "lines": st.lists(GOOD_LINE, min_size=1, max_size=4),
     "fmt": st.just("jsonl"), "namespace": VALID_NS, "skip_invalid": st.booleans()},
    {"lines": st.lists(st.one_of(GOOD_LINE, BAD_LINE), max_size=5),
     "fmt": st.sampled_from(["jsonl", "memento"]), "namespace": NAMESPACES},
)  # fmt: skip
# A query is what the API takes: text, or a vector (of any length and values).
VECTORS = st.lists(st.one_of(NUMBERS, st.floats(-1, 1)), max_size=40)
SEARCH = one_field_fuzzed(
    {"op": st.just("search"), "query": VALID_TEXT, "k": st.integers(1, 10),
     "namespace": VALID_NS},
    {"query": st.one_of(TEXTS, VECTORS), "k": st.one_of(st.integers(-2, 60), NUMBERS),
     "namespace": NAMESPACES},
)  # fmt: skip
GET = one_field_fuzzed(
    {"op": st.just("get"), "id": SMALL_IDS, "namespace": ID_NS},
    {"id": IDS, "namespace": NAMESPACES},
)
DELETE = one_field_fuzzed(
    {"op": st.just("delete"), "id": SMALL_IDS, "namespace": ID_NS},
    {"id": IDS, "namespace": NAMESPACES},
)
OUTCOME = one_field_fuzzed(
    {"op": st.just("outcome"), "namespace": ID_NS, "stage": st.sampled_from(["plan", "refine"]),
     "targets": st.dictionaries(SMALL_IDS, st.floats(-1, 1), min_size=1, max_size=3),
     "step_size": st.one_of(st.none(), st.floats(0.01, 1))},
    {"namespace": NAMESPACES, "stage": TEXTS,
     "targets": st.dictionaries(IDS, NUMBERS, max_size=3), "step_size": NUMBERS},
)  # fmt: skip
OPERATIONS = st.lists(st.one_of(ADD, IMPORT, SEARCH, GET, DELETE, OUTCOME), min_size=1,
                      max_size=6)  # fmt: skip

Dump = tuple[dict[int, tuple[Any, ...]], dict[tuple[int, str], tuple[Any, ...]]]


def _dump(memory: CaseMemory) -> Dump:
    """Everything stored: each case's fields and each (case, stage)'s statistics."""
    with memory.engine.connect() as conn:
        cases = {
            int(r.id): (
                r.namespace,
                r.task,
                r.plan,
                json.dumps(r.trajectory),
                r.answer,
                r.reward,
                r.outcome,
                r.source,
                json.dumps(r.meta),
                r.deleted_at is not None,
            )  # fmt: skip
            for r in conn.execute(select(CaseRow))
        }
        stats = {
            (int(r.case_id), r.stage): (r.visits, r.q_value, r.reward_sum, r.last_reward)
            for r in conn.execute(select(CaseStatRow))
        }
    return cases, stats


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated store with a few cases, copied for each example (fast: no
    migration per example)."""
    folder = tmp_path_factory.mktemp("fuzz-template")
    path = folder / "cases.db"
    _seed(folder, f"sqlite:///{path}")
    return path


def _seed(home: Path, url: str) -> None:
    """The template's cases: ids 1-4 in "default", 5 and 6 in "team-a" (with statistics)."""
    memory = CaseMemory(Settings(home=home), embedder=HashEmbedder(), database_url=url)
    memory.add_many([NewCase(task=f"seed case {i}", plan=f"plan {i}") for i in range(4)],
                    namespace="default")  # fmt: skip
    memory.add("another tenant's case", namespace="team-a", meta={"k": [1, "two"]})
    memory.add("a case with statistics", namespace="team-a")
    memory.case_stats.apply("team-a", "plan", {6: 1.0}, None)
    memory.close()


@pytest.fixture
def fresh_store(template: Path, tmp_path: Path) -> Iterator[Any]:
    counter = iter(range(10**9))

    def make() -> tuple[CaseMemory, Path]:
        folder = tmp_path / f"example-{next(counter)}"
        folder.mkdir()
        shutil.copy(template, folder / "cases.db")
        memory = CaseMemory(Settings(home=folder), embedder=HashEmbedder(),
                            database_url=f"sqlite:///{folder / 'cases.db'}")  # fmt: skip
        return memory, folder

    yield make


@pytest.fixture(scope="module")
def pg_template(postgres_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same seeded store in a PostgreSQL database, copied for each example with CREATE
    DATABASE ... TEMPLATE (no migration per example)."""
    name = f"fuzz_template_{uuid.uuid4().hex[:8]}"
    _admin(postgres_base_url, f'CREATE DATABASE "{name}"')
    _seed(tmp_path_factory.mktemp("fuzz-pg-template"), f"{postgres_base_url}/{name}")
    yield name
    _admin(postgres_base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(base_url: str, statement: str) -> None:
    import psycopg

    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def fresh_pg_store(postgres_base_url: str, pg_template: str, tmp_path: Path) -> Iterator[Any]:
    made: list[str] = []

    def make() -> tuple[CaseMemory, Path, str]:
        name = f"fuzz_{uuid.uuid4().hex[:12]}"
        _admin(postgres_base_url, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        made.append(name)
        folder = tmp_path / name
        folder.mkdir()
        url = f"{postgres_base_url}/{name}"
        memory = CaseMemory(Settings(home=folder), embedder=HashEmbedder(), database_url=url)
        return memory, folder, url

    yield make
    for name in made:
        _admin(postgres_base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _call(memory: CaseMemory, folder: Path, op: dict[str, Any]) -> Any:
    kind = op["op"]
    ns = {"namespace": op["namespace"]} if "namespace" in op else {}
    if kind == "add":
        fields = {k: op[k] for k in ("plan", "answer", "reward", "outcome", "source", "meta",
                                     "trajectory") if k in op}  # fmt: skip
        return memory.add(op["task"], **fields, **ns)
    if kind == "import":
        path = folder / "in.jsonl"
        path.write_bytes(b"\n".join(op["lines"]))
        return memory.import_file(path, fmt=op["fmt"], skip_invalid=op.get("skip_invalid", False),
                                  **ns)  # fmt: skip
    if kind == "search":
        return memory.search(op["query"], op.get("k", 5), **ns)
    if kind == "get":
        return memory.get(op["id"], **ns)
    if kind == "delete":
        return memory.delete(op["id"], **ns)
    return memory.case_stats.apply(op["namespace"], op["stage"], op["targets"],
                                   op.get("step_size"))  # fmt: skip


def _check(op: dict[str, Any], result: Any, before: Dump, after: Dump) -> None:
    """What a successful call may have changed."""
    (old_cases, old_stats), (new_cases, new_stats) = before, after
    kind = op["op"]
    kept = {i: v for i, v in new_cases.items() if i in old_cases}
    if kind == "delete":
        changed = {i for i in old_cases if old_cases[i] != kept[i]}
        assert changed == {op["id"]} and kept[op["id"]][-1], (op, changed)
        assert {i: v for i, v in kept.items() if i != op["id"]} == {
            i: v for i, v in old_cases.items() if i != op["id"]
        }
    else:
        assert kept == old_cases, op  # nothing stored before was changed or removed
    added = set(new_cases) - set(old_cases)
    if kind == "add":
        assert added == {result.id}
        assert new_cases[result.id][1] == op["task"]
    elif kind == "import":
        assert len(added) == result.added, (op, result)
    else:
        assert not added, op
    if kind == "outcome":
        assert {k: v for k, v in new_stats.items() if k in old_stats and k[0] not in result} == {
            k: v for k, v in old_stats.items() if k[0] not in result
        }
        for (case_id, _stage), values in new_stats.items():
            if case_id in result:
                assert all(math.isfinite(v) for v in values[1:3]), values
    elif kind != "import" or not added:
        assert {k: v for k, v in new_stats.items() if k[0] in old_cases} == old_stats, op
    if kind == "get":
        assert result.id == op["id"] and result.task == old_cases[op["id"]][1]


def _run(memory: CaseMemory, folder: Path, url: str, operations: list[dict[str, Any]]) -> None:
    """Each operation succeeds (and changes only what it is about) or is refused clearly (and
    changes nothing); afterwards the store opens clean, every case readable."""
    try:
        for op in operations:
            before = _dump(memory)
            try:
                result = _call(memory, folder, op)
            except MemoryAgentError as exc:
                event(f"{op['op']}: refused ({type(exc).__name__})")
                assert str(exc).strip(), op  # a message that says something
                assert _dump(memory) == before, op  # refused: nothing changed
                continue
            event(f"{op['op']}: done")
            _check(op, result, before, _dump(memory))
    finally:
        memory.close()
    with CaseMemory(Settings(home=folder), embedder=HashEmbedder(), database_url=url) as again:
        for ns in again.namespaces():
            again.list_cases(ns, limit=1000)


# No warning filter: a value beyond float32 is refused before numpy could warn about it.
@given(operations=OPERATIONS)
def test_any_input_is_stored_or_refused_clearly_and_nothing_else_changes(
    fresh_store: Any, operations: list[dict[str, Any]]
) -> None:
    memory, folder = fresh_store()
    _run(memory, folder, f"sqlite:///{folder / 'cases.db'}", operations)


# The same on PostgreSQL, whose types, limits and errors differ from SQLite's. A new database
# per example (from a template) costs ~0.3 s, so fewer examples: under ~30 s in all.
PG_EXAMPLES = 400 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 40


@pytest.mark.postgres
@settings(max_examples=PG_EXAMPLES)
@given(operations=OPERATIONS)
def test_any_input_is_stored_or_refused_clearly_on_postgresql(
    fresh_pg_store: Any, operations: list[dict[str, Any]]
) -> None:
    memory, folder, url = fresh_pg_store()
    _run(memory, folder, url, operations)


@pytest.mark.parametrize("case_id", [2**63, -(2**63) - 1, 2**80])
def test_an_id_beyond_64_bits_is_a_clear_error_on_both_backends(
    database_url: str, isolated_home: Path, case_id: int
) -> None:
    """Found by the fuzzing above: SQLite's driver raised a bare OverflowError, PostgreSQL a
    raw "bigint out of range"."""
    from memory_agent.errors import InvalidInputError

    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(),
                    database_url=database_url) as memory:  # fmt: skip
        kept = memory.add("a case that must stay", namespace="default")
        with pytest.raises(InvalidInputError, match="outside the database's range"):
            memory.get(case_id, namespace="default")
        with pytest.raises(InvalidInputError, match="outside the database's range"):
            memory.delete(case_id, namespace="default")
        assert memory.get(kept.id, namespace="default").task == "a case that must stay"


def test_a_lone_surrogate_in_any_text_field_is_a_clear_error(isolated_home: Path) -> None:
    """Found by the fuzzing above: `source` is not checked for valid Unicode by validation,
    and SQLite's driver raised a bare UnicodeEncodeError."""
    from memory_agent.errors import InvalidInputError

    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(),
                    database_url=f"sqlite:///{isolated_home / 'c.db'}") as memory:  # fmt: skip
        with pytest.raises(InvalidInputError, match="not valid Unicode"):
            memory.add("task", source="\ud800")
        assert memory.count() == 0


def test_feedback_with_a_nul_in_its_stage_or_namespace_is_a_clear_error_on_both_backends(
    database_url: str, isolated_home: Path
) -> None:
    """Found by the PostgreSQL fuzzing above: the statistics' lock keys on the stage before it
    was checked, and PostgreSQL's driver raised a raw DataError ("text fields cannot contain
    NUL"); SQLite stored statistics under a stage named "\\x00"."""
    from memory_agent.errors import InvalidInputError

    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(),
                    database_url=database_url) as memory:  # fmt: skip
        case = memory.add("a case whose statistics must stay", namespace="default")
        before = _dump(memory)
        for namespace, stage in (("default", "\x00"), ("default", "plan\x00"), ("\x00", "plan")):
            with pytest.raises(InvalidInputError, match="not valid"):
                memory.case_stats.apply(namespace, stage, {case.id: 1.0}, None)
        with pytest.raises(InvalidInputError, match="stage name"):
            memory.case_stats.credit([case.id], "\x00", 1.0)
        assert _dump(memory) == before


def test_a_nul_in_any_text_that_reaches_postgresql_is_a_clear_error(
    database_url: str, isolated_home: Path
) -> None:
    """The same for any text no check stops before the database, e.g. a filter's value:
    PostgreSQL cannot hold a NUL, SQLite can (and then simply finds nothing)."""
    from memory_agent.errors import InvalidInputError

    with CaseMemory(Settings(home=isolated_home), embedder=HashEmbedder(),
                    database_url=database_url) as memory:  # fmt: skip
        memory.add("a case", namespace="default", meta={"k": "v"})
        if database_url.startswith("postgresql"):
            with pytest.raises(InvalidInputError, match="NUL character"):
                memory.search("a case", filters={"k": "v\x00"})
        else:
            assert memory.search("a case", filters={"k": "v\x00"}) == []
        assert [h.case.task for h in memory.search("a case", filters={"k": "v"})] == ["a case"]
