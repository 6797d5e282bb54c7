"""Per-namespace access tokens in the library, on SQLite and PostgreSQL: once a namespace has
a token, every operation on it must present it (else NamespaceAccessError and nothing
changes); namespaces without one behave as before; the token is stored only as a salted
hash, and can be rotated and removed by whoever holds it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hash_embedder import HashEmbedder
from sqlalchemy import select, text

from memory_agent.errors import InvalidInputError, NamespaceAccessError
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase
from memory_agent.store.models import CaseRow, CaseStatRow, NamespaceRow


def open_memory(url: str, home: Path, token: str | None = None, **settings: Any) -> CaseMemory:
    return CaseMemory(
        Settings(home=home, **settings), embedder=HashEmbedder(),  # type: ignore[arg-type]
        database_url=url, namespace_token=token,
    )  # fmt: skip


def dump(memory: CaseMemory) -> tuple[Any, ...]:
    """Everything stored about cases and namespaces."""
    with memory.engine.connect() as conn:
        cases = sorted(tuple(r) for r in conn.execute(select(*CaseRow.__table__.c)))
        stats = sorted(tuple(r) for r in conn.execute(select(*CaseStatRow.__table__.c)))
        spaces = sorted(tuple(r) for r in conn.execute(select(*NamespaceRow.__table__.c)))
    return repr(cases), repr(stats), repr(spaces)


@pytest.fixture
def store(database_url: str, isolated_home: Path) -> Iterator[tuple[CaseMemory, str]]:
    """A memory with cases in "secret" and "open"; "secret" then gets a token."""
    memory = open_memory(database_url, isolated_home)
    memory.add_many([NewCase(task=f"secret task {i}", answer=f"secret {i}") for i in range(3)],
                    namespace="secret")  # fmt: skip
    memory.add("an open task", namespace="open")
    memory.case_stats.apply("secret", "plan", {1: 1.0}, None)
    token = memory.set_namespace_token("secret")
    yield memory, token
    memory.close()


def operations(memory: CaseMemory, tmp: Path) -> dict[str, Callable[[], Any]]:
    """Every operation on namespace "secret" a caller can make."""
    vector = HashEmbedder().embed(["secret task 0"])[0]
    lines = tmp / "in.jsonl"
    lines.write_text(json.dumps({"task": "imported", "namespace": "secret"}) + "\n")
    plain = tmp / "plain.jsonl"
    plain.write_text(json.dumps({"task": "imported into a named namespace"}) + "\n")
    ns = {"namespace": "secret"}
    return {
        "add": lambda: memory.add("a new secret task", **ns),
        "add_many": lambda: memory.add_many([NewCase(task="x")], namespaces=["secret"]),
        "search": lambda: memory.search("secret task 0", **ns),
        "search vector": lambda: memory.search(vector, **ns),
        "nearest": lambda: memory.nearest(vector, 3, **ns),
        "candidates": lambda: memory.candidates(vector, **ns),
        "get": lambda: memory.get(1, **ns),
        "get_many": lambda: memory.get_many([1, 2], **ns),
        "list": lambda: memory.list_cases("secret"),
        "count": lambda: memory.count("secret"),
        "update": lambda: memory.update(1, answer="overwritten", **ns),
        "delete": lambda: memory.delete(3, **ns),
        "merge": lambda: memory.merge(1, [2], **ns),
        "dedupe": lambda: memory.dedupe("secret"),
        "find_duplicates": lambda: memory.find_duplicates("secret"),
        "set_budget": lambda: memory.set_budget("secret", 1),
        "budget": lambda: memory.budget("secret"),
        "stats": lambda: memory.stats("secret"),
        "export": lambda: memory.export(tmp / "one.jsonl", "secret"),
        "export all": lambda: memory.export(tmp / "all.jsonl"),
        "import (namespace in the file)": lambda: memory.import_file(lines),
        "import (namespace named)": lambda: memory.import_file(plain, **ns),
        "purge": lambda: memory.purge("secret"),
        "purge all": lambda: memory.purge(),
        "rotate": lambda: memory.rotate_namespace_token("secret"),
        "remove": lambda: memory.remove_namespace_token("secret"),
    }


def test_every_operation_on_a_protected_namespace_needs_its_token(
    store: tuple[CaseMemory, str], database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    memory, token = store
    before = dump(memory)
    for label, call in operations(memory, tmp_path).items():
        with pytest.raises(NamespaceAccessError, match="'secret' (is|are) protected") as refused:
            call()
        assert "Nothing was done" in str(refused.value), label
        assert dump(memory) == before, label  # refused: nothing changed
    # The memory's configured namespace is no different from a named one.
    configured = open_memory(database_url, isolated_home, namespace="secret")
    try:
        with pytest.raises(NamespaceAccessError):
            configured.list_cases()
        with pytest.raises(NamespaceAccessError):
            configured.add("through the default namespace")
    finally:
        configured.close()
    # A wrong token is refused the same way, and says it is wrong.
    wrong = open_memory(database_url, isolated_home, token=token[:-2] + "xx")
    try:
        for label, call in operations(wrong, tmp_path).items():
            with pytest.raises(NamespaceAccessError, match="token given for namespace 'secret' is "
                               "wrong|'secret' are protected"):  # fmt: skip
                call()
            assert dump(wrong) == before, label
    finally:
        wrong.close()
    # Other namespaces are as open as before.
    assert [c.task for c in memory.list_cases("open")] == ["an open task"]
    memory.add("another open task", namespace="open")
    assert memory.count("open") == 2


def test_the_right_token_opens_every_operation(
    store: tuple[CaseMemory, str], database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    memory, token = store
    holder = open_memory(database_url, isolated_home, token=token)
    try:
        done = {}
        for label, call in operations(holder, tmp_path).items():
            if label in ("rotate", "remove"):
                continue  # below
            done[label] = call()
        assert done["get"].answer == "secret 0" and done["count"] == 5  # 3 + add + add_many
        assert done["update"].answer == "overwritten" and done["merge"].dropped == (2,)
        assert (tmp_path / "all.jsonl").read_text().count('"namespace": "secret"') >= 1
        # The token also comes from the settings (MEMORY_AGENT_NAMESPACE_TOKEN).
        from_settings = CaseMemory(
            Settings(home=isolated_home, namespace_token=token), embedder=HashEmbedder(),  # type: ignore[arg-type]
            database_url=database_url,
        )  # fmt: skip
        try:
            assert from_settings.count("secret") == holder.count("secret")
        finally:
            from_settings.close()
    finally:
        holder.close()


def test_the_token_comes_from_the_environment(
    store: tuple[CaseMemory, str],
    database_url: str,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _memory, token = store
    monkeypatch.setenv("MEMORY_AGENT_NAMESPACE_TOKEN", token)
    with open_memory(database_url, isolated_home) as memory:
        assert [c.task for c in memory.list_cases("secret", limit=1)] == ["secret task 2"]


def test_only_a_salted_hash_of_the_token_is_stored(
    store: tuple[CaseMemory, str], database_url: str, isolated_home: Path
) -> None:
    memory, token = store
    assert token.startswith("mans_") and len(token) > 40
    with memory.engine.connect() as conn:
        everything = " ".join(
            str(v)
            for table in ("namespaces", "cases", "store_meta")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
            for v in row
        )
        (stored,) = conn.execute(
            select(NamespaceRow.token_hash).where(NamespaceRow.name == "secret")
        ).one()
    assert token not in everything and token[5:] not in everything
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1)
    # Another namespace given the very same token would get another salt, so another hash.
    other = open_memory(database_url, isolated_home)
    try:
        assert other.set_namespace_token("other") != token
        with other.engine.connect() as conn:
            salts = {
                row[0].split("$")[4]
                for row in conn.execute(select(NamespaceRow.token_hash).where(
                    NamespaceRow.token_hash.is_not(None)))
            }  # fmt: skip
        assert len(salts) == 2 and salt in salts
    finally:
        other.close()


def test_rotate_and_remove_need_the_current_token_and_take_effect_at_once(
    store: tuple[CaseMemory, str], database_url: str, isolated_home: Path
) -> None:
    memory, token = store
    holder = open_memory(database_url, isolated_home, token=token)
    # Another long-lived process, checking the database at every operation.
    elsewhere = open_memory(database_url, isolated_home, token=token,
                            store={"index_sync_interval": 0.0})  # fmt: skip
    try:
        assert elsewhere.count("secret") == 3
        with pytest.raises(InvalidInputError, match="already has an access token; to replace"):
            holder.set_namespace_token("secret")
        with pytest.raises(InvalidInputError, match="'open' has no access token to rotate"):
            holder.rotate_namespace_token("open")
        new = holder.rotate_namespace_token("secret")
        assert new != token and new.startswith("mans_")
        # The old token stops working in the process that rotated it and in another one.
        for stale in (holder, elsewhere):
            with pytest.raises(NamespaceAccessError, match="wrong .*rotated"):
                stale.count("secret")
        with memory.presenting(new):  # the new one works, here through `presenting`
            assert memory.count("secret") == 3
            assert memory.namespace_protected("secret")
        with pytest.raises(NamespaceAccessError):
            memory.count("secret")  # outside the block: the memory's own (no) token again
        with pytest.raises(NamespaceAccessError):
            holder.remove_namespace_token("secret")  # holding the old token only
        with memory.presenting(new):
            memory.remove_namespace_token("secret")
        # Open again, for everyone, here and elsewhere.
        assert not memory.namespace_protected("secret")
        assert memory.count("secret") == 3 and elsewhere.count("secret") == 3
        memory.add("stored without a token", namespace="secret")
        assert holder.count("secret") == 4  # a stale token does no harm on an open namespace
    finally:
        holder.close()
        elsewhere.close()


def test_a_namespace_can_be_protected_before_its_first_case(
    database_url: str, isolated_home: Path
) -> None:
    memory = open_memory(database_url, isolated_home)
    try:
        token = memory.set_namespace_token("fresh")
        assert "fresh" in memory.namespaces() and memory.namespace_protected("fresh")
        with pytest.raises(NamespaceAccessError):
            memory.add("no token", namespace="fresh")
        with memory.presenting(token):
            case = memory.add("with the token", namespace="fresh")
            assert memory.get(case.id, namespace="fresh").task == "with the token"
            hits = memory.search("with the token", 1, namespace="fresh")
            assert [h.case.id for h in hits] == [case.id]
        assert memory.count() == 1  # store-wide counts stay open; the cases do not
    finally:
        memory.close()


def test_a_token_set_in_another_process_applies_within_the_sync_interval(
    database_url: str, isolated_home: Path
) -> None:
    """The cached token state of a long-lived process is as fresh as its index: at most
    `store.index_sync_interval` old (here 0.2 s)."""
    import time

    reader = open_memory(database_url, isolated_home, store={"index_sync_interval": 0.2})
    admin = open_memory(database_url, isolated_home)
    try:
        admin.add("a case", namespace="late")
        assert reader.count("late") == 1
        token = admin.set_namespace_token("late")
        time.sleep(0.25)
        with pytest.raises(NamespaceAccessError):
            reader.count("late")
        with reader.presenting(token):
            assert reader.count("late") == 1
    finally:
        reader.close()
        admin.close()


def test_a_token_must_be_text(database_url: str, isolated_home: Path) -> None:
    memory = open_memory(database_url, isolated_home)
    try:
        token = memory.set_namespace_token("typed")
        with pytest.raises(InvalidInputError, match="must be text; got int"):
            with memory.presenting(12345):  # type: ignore[arg-type]
                pass
        with memory.presenting(f"  {token}\n"):  # pasted with spaces or a newline: still it
            assert memory.count("typed") == 0
        vector = np.zeros(HashEmbedder().dim, dtype=np.float32)
        with memory.presenting(""), pytest.raises(NamespaceAccessError, match="none was given"):
            memory.nearest(vector, 1, namespace="typed")
    finally:
        memory.close()
