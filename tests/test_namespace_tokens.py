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


# ---------------------------------------------------------------------- the CLI


def test_cli_sets_rotates_and_removes_a_token_and_every_command_needs_it(
    database_url: str, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from memory_agent.cli import app

    seed = open_memory(database_url, isolated_home)
    seed.add_many([NewCase(task=f"secret task {i}", answer=f"secret {i}") for i in range(2)],
                  namespace="secret")  # fmt: skip
    seed.add("an open task", namespace="open")
    seed.close()
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str, token: str | None = None) -> Any:
        env = {"MEMORY_AGENT_NAMESPACE_TOKEN": token} if token is not None else {}
        return runner.invoke(app, list(args), env=env)

    made = run("memory", "namespace", "token", "set", "secret")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("mans_") and "\n" not in token  # alone on stdout, for $(...)
    assert "shown only now" in made.stderr
    with open_memory(database_url, isolated_home, token=token) as check:
        before = dump(check)
    export = tmp_path / "out.jsonl"
    protected_commands = [
        ("memory", "list", "-n", "secret"),
        ("memory", "show", "1", "-n", "secret"),
        ("memory", "delete", "1", "-n", "secret"),
        ("memory", "export", str(export), "-n", "secret"),
        ("memory", "export", str(export)),  # every namespace, "secret" among them
        ("memory", "stats", "-n", "secret"),
        ("memory", "budget", "1", "-n", "secret"),
        ("memory", "dedupe", "-n", "secret"),
        ("policy", "stats", "-n", "secret"),
        ("policy", "reset", "-n", "secret", "-y"),
        ("policy", "reset", "-y"),  # every namespace
        ("memory", "namespace", "token", "rotate", "secret"),
        ("memory", "namespace", "token", "remove", "secret"),
    ]
    for args in protected_commands:
        for presented in (None, token[:-1] + ("A" if token[-1] != "A" else "B")):
            refused = run(*args, token=presented)
            assert refused.exit_code == NamespaceAccessError.exit_code == 8, (args, refused.output)
            assert refused.output.startswith("Error: ") and "secret" in refused.output, args
            assert "Traceback" not in refused.output
            assert not export.exists()
    with open_memory(database_url, isolated_home, token=token) as check:
        assert dump(check) == before  # nothing refused changed anything
    # Namespaces without a token: as before, no token needed.
    assert run("memory", "list", "-n", "open").exit_code == 0
    listed = run("memory", "namespace", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [
        {"namespace": "open", "cases": 1, "protected": False},
        {"namespace": "secret", "cases": 2, "protected": True},
    ]
    # With the token, through the environment or the global flag.
    shown = run("memory", "show", "1", "-n", "secret", "--json", token=token)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["answer"] == "secret 0"
    flagged = runner.invoke(app, ["--namespace-token", token, "memory", "list", "-n", "secret"])
    assert flagged.exit_code == 0 and "secret task 1" in flagged.stdout
    assert run("memory", "export", str(export), token=token).exit_code == 0
    assert export.read_text().count("\n") == 3  # both namespaces' cases
    # Rotate: the old token stops working, the new one works; then remove it.
    rotated = run("memory", "namespace", "token", "rotate", "secret", token=token)
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    assert new != token and new.startswith("mans_")
    assert run("memory", "list", "-n", "secret", token=token).exit_code == 8
    assert run("memory", "list", "-n", "secret", token=new).exit_code == 0
    again = run("memory", "namespace", "token", "set", "secret", token=new)
    assert again.exit_code == 2 and "already has an access token" in again.output
    removed = run("memory", "namespace", "token", "remove", "secret", token=new)
    assert removed.exit_code == 0 and "open to every caller" in removed.stdout
    assert run("memory", "list", "-n", "secret").exit_code == 0


def test_cli_logs_show_a_protected_namespaces_runs_only_with_its_token(
    database_url: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's log holds its namespace's task: `logs list` leaves out the runs of protected
    namespaces the caller has no token for, `logs show` refuses them."""
    from typer.testing import CliRunner

    from memory_agent.cli import app

    RUN = {"model": "m", "policy": "value", "prompt_style": "plain", "learn": True}
    with open_memory(database_url, isolated_home) as memory:
        log = memory.run_log()
        log.start("run-secret-0001", namespace="secret", task="the secret plan", **RUN)
        log.start("run-open-0002", namespace="open", task="an open task", **RUN)
        token = memory.set_namespace_token("secret")
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", database_url)
    runner = CliRunner()
    listed = runner.invoke(app, ["logs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["run-open-0002"]
    shown = runner.invoke(app, ["logs", "show", "run-secret"])
    assert shown.exit_code == 8 and "the secret plan" not in shown.output
    env = {"MEMORY_AGENT_NAMESPACE_TOKEN": token}
    listed = runner.invoke(app, ["logs", "list", "--json"], env=env)
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {"run-open-0002", "run-secret-0001"}
    shown = runner.invoke(app, ["logs", "show", "run-secret"], env=env)
    assert shown.exit_code == 0 and "the secret plan" in shown.output


# ---------------------------------------------------------------------- the HTTP service


def test_http_requests_on_a_protected_namespace_need_its_token_header(
    database_url: str, isolated_home: Path
) -> None:
    """A real uvicorn server on loopback over the same database. It is started with the
    token in its own settings (MEMORY_AGENT_NAMESPACE_TOKEN): the server must present each
    request's own header only, never that one."""
    import httpx
    from http_server import serving

    from memory_agent.client import ApiForbiddenError, MemoryClient

    admin = open_memory(database_url, isolated_home)
    secret_id = admin.add("a secret task about sorting", answer="the secret", namespace="secret").id
    admin.add("an open task about sorting", namespace="open")
    token = admin.set_namespace_token("secret")
    before = dump(admin)
    header = {"X-Namespace-Token": token}
    wrong = {"X-Namespace-Token": token[:-1] + ("A" if token[-1] != "A" else "B")}
    home = isolated_home / "served"
    with serving(home, DATABASE_URL=database_url, INDEX_SYNC_INTERVAL="0",
                 NAMESPACE_TOKEN=token) as url, httpx.Client(base_url=url) as http:  # fmt: skip
        # A retrieval made with the token, to report an outcome on below.
        opened = http.post("/v1/retrieve", json={"task": "sorting", "namespace": "secret"},
                           headers=header)  # fmt: skip
        assert opened.status_code == 200, opened.text
        assert [c["case_id"] for c in opened.json()["cases"]] == [secret_id]
        retrieval_id = opened.json()["retrieval_id"]
        before = dump(admin)  # the retrieval is logged in the run log, not in these tables
        requests = [
            ("POST", "/v1/retrieve", {"task": "sorting", "namespace": "secret"}, None),
            ("POST", "/v1/cases", {"task": "a new secret", "namespace": "secret"}, None),
            ("POST", "/v1/outcomes", {"retrieval_id": retrieval_id, "reward": 1.0}, None),
            ("GET", "/v1/cases", None, {"namespace": "secret"}),
            ("GET", f"/v1/cases/{secret_id}", None, {"namespace": "secret"}),
            ("DELETE", f"/v1/cases/{secret_id}", None, {"namespace": "secret"}),
            ("GET", "/v1/stats", None, {"namespace": "secret"}),
            ("GET", "/v1/gaps", None, {"namespace": "secret"}),
        ]
        for method, path, body, params in requests:
            for headers, says in ((None, "none was given"), (wrong, "is wrong")):
                refused = http.request(method, path, json=body, params=params, headers=headers)
                assert refused.status_code == 403, (method, path, refused.text)
                error = refused.json()["error"]
                assert error["type"] == "forbidden" and says in error["message"], error
                assert "the secret" not in refused.text
        assert dump(admin) == before  # every refused request left everything as it was
        # Namespaces without a token: no header needed, as before.
        open_list = http.get("/v1/cases", params={"namespace": "open"})
        assert open_list.status_code == 200 and len(open_list.json()["cases"]) == 1
        # With the header, everything works; the outcome is applied once.
        for method, path, body, params in requests:
            done = http.request(method, path, json=body, params=params, headers=header)
            assert done.status_code in (200, 201), (method, path, done.text)
        with admin.presenting(token):
            deleted = admin.get(secret_id, namespace="secret", include_deleted=True)
        assert deleted.answer == "the secret"
        # The Python client sends it with namespace_token=; without it, a clear error.
        with MemoryClient(url, namespace="secret", namespace_token=token) as client:
            new_id = client.record("recorded through the client")
            assert client.get(new_id)["task"] == "recorded through the client"
        with (
            MemoryClient(url, namespace="secret") as client,
            pytest.raises(ApiForbiddenError, match="protected by an access token") as forbidden,
        ):
            client.list()
        assert isinstance(forbidden.value, NamespaceAccessError) and forbidden.value.status == 403
        # Rotated elsewhere: the server refuses the old token at once, takes the new one.
        with admin.presenting(token):
            new = admin.rotate_namespace_token("secret")
        stale = http.get("/v1/cases", params={"namespace": "secret"}, headers=header)
        assert stale.status_code == 403 and "rotated" in stale.json()["error"]["message"]
        fresh = http.get("/v1/cases", params={"namespace": "secret"},
                         headers={"X-Namespace-Token": new})  # fmt: skip
        assert fresh.status_code == 200 and len(fresh.json()["cases"]) == 2
    admin.close()


def test_the_service_presents_its_settings_token_as_an_mcp_server_does(
    database_url: str, isolated_home: Path
) -> None:
    """`memory-agent mcp` serves one agent: its token comes from MEMORY_AGENT_NAMESPACE_TOKEN
    (the settings), and every call on a protected namespace needs it."""
    from memory_agent.service import MemoryService

    admin = open_memory(database_url, isolated_home)
    admin.add("a protected task", namespace="agent")
    token = admin.set_namespace_token("agent")
    settings = Settings(home=isolated_home, database_url=database_url, namespace="agent",
                        policy={"name": "similarity"})  # fmt: skip
    without = MemoryService(settings, memory=open_memory(database_url, isolated_home),
                            owns_memory=True)  # fmt: skip
    holder_settings = settings.replace(namespace_token=token)
    holder = MemoryService(holder_settings, owns_memory=True, memory=CaseMemory(
        holder_settings, embedder=HashEmbedder()))  # type: ignore[arg-type]  # fmt: skip
    try:
        for call in (lambda s: s.retrieve("a protected task"), lambda s: s.list(),
                     lambda s: s.record("another"), lambda s: s.stats()):  # fmt: skip
            with pytest.raises(NamespaceAccessError):
                call(without)
            call(holder)
        found = holder.retrieve("a protected task")
        with pytest.raises(NamespaceAccessError):  # an outcome acts on the retrieval's namespace
            without.report_outcome(found["retrieval_id"], 1.0)
        assert holder.report_outcome(found["retrieval_id"], 1.0)["credited"]
    finally:
        without.close()
        holder.close()
        admin.close()
