"""Namespaces are tenants: by-id operations act within the namespace in force (API and CLI),
and one tenant's feedback never moves another's learned scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hash_embedder import HashEmbedder
from typer.testing import CliRunner

from memory_agent.errors import CaseNotFoundError
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


@pytest.fixture
def tenants(database_url: str, isolated_home: Path) -> CaseMemory:
    memory = CaseMemory(
        Settings(home=isolated_home, namespace="a"), embedder=HashEmbedder(),  # type: ignore[arg-type]
        database_url=database_url,
    )  # fmt: skip
    memory.add("a's task", answer="a's answer")
    memory.add("b's secret task", answer="b's secret", namespace="b")
    yield memory  # type: ignore[misc]
    memory.close()


def _ids(memory: CaseMemory) -> tuple[int, int]:
    a = memory.list_cases("a")[0].id
    b = memory.list_cases("b")[0].id
    return a, b


def test_api_by_id_calls_never_reach_another_namespace(tenants: CaseMemory) -> None:
    a_id, b_id = _ids(tenants)
    missing = max(a_id, b_id) + 1000
    # The configured namespace ("a") is the default for by-id calls.
    assert tenants.get(a_id).task == "a's task"
    with pytest.raises(CaseNotFoundError) as foreign:
        tenants.get(b_id)
    with pytest.raises(CaseNotFoundError) as absent:
        tenants.get(missing)
    # Another tenant's case is indistinguishable from an id that does not exist.
    assert str(foreign.value).replace(str(b_id), "N") == str(absent.value).replace(
        str(missing), "N"
    )
    for call in (
        lambda: tenants.update(b_id, answer="overwritten by a"),
        lambda: tenants.delete(b_id),
        lambda: tenants.merge(a_id, [b_id]),
        lambda: tenants.get(b_id, namespace="a"),
        lambda: tenants.get(a_id, namespace="b"),
        lambda: tenants.delete(a_id, namespace="b"),
    ):
        with pytest.raises(CaseNotFoundError):
            call()
    b_case = tenants.get(b_id, namespace="b")
    assert (b_case.answer, b_case.namespace) == ("b's secret", "b")
    assert tenants.get(a_id).answer == "a's answer"
    assert tenants.count("b") == 1 and tenants.count("a") == 1
    # Within its own namespace, everything still works.
    assert tenants.update(b_id, namespace="b", answer="new").answer == "new"
    tenants.delete(b_id, namespace="b")
    assert tenants.count("b") == 0


def test_cli_by_id_commands_never_reach_another_namespace(
    tenants: CaseMemory, database_url: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_agent.cli import app

    a_id, b_id = _ids(tenants)
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", database_url)
    monkeypatch.setenv("MEMORY_AGENT_NAMESPACE", "a")
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(app, ["memory", *args])

    for args in (
        ("show", str(b_id)),
        ("show", str(b_id), "--json"),
        ("delete", str(b_id)),
        ("show", str(a_id), "-n", "b"),
        ("delete", str(a_id), "-n", "b"),
    ):
        result = run(*args)
        assert result.exit_code == CaseNotFoundError.exit_code, (args, result.output)  # type: ignore[attr-defined]
        assert "secret" not in result.output  # type: ignore[attr-defined]
        assert "No case with id" in result.output or "No live case" in result.output  # type: ignore[attr-defined]
    shown = run("show", str(a_id))
    assert shown.exit_code == 0 and "a's answer" in shown.output  # type: ignore[attr-defined]
    shown_b = run("show", str(b_id), "-n", "b")
    assert shown_b.exit_code == 0 and "b's secret" in shown_b.output  # type: ignore[attr-defined]
    tenants.sync(force=True)
    assert tenants.count("b") == 1 and tenants.count("a") == 1
    assert run("delete", str(b_id), "--namespace", "b").exit_code == 0
    assert tenants.count("b") == 0


def test_neural_feedback_in_one_namespace_leaves_anothers_scores_unchanged(
    database_url: str, isolated_home: Path
) -> None:
    pytest.importorskip("torch")
    from memory_agent.policies.base import Feedback
    from memory_agent.policies.neural import NeuralPolicy

    settings = Settings(home=isolated_home, namespace="a", policy={"save_every": 1})
    memory = CaseMemory(settings, embedder=HashEmbedder(), database_url=database_url)  # type: ignore[arg-type]
    embed = HashEmbedder().embed
    try:
        for ns in ("a", "b"):
            for i in range(6):
                memory.add(f"{ns} task {i}", answer=f"answer {i}", reward=0.5, namespace=ns)
        policy = NeuralPolicy(memory, seed=3)
        state_b = embed(["b task 1"])[0]
        cands_b = memory.candidates(state_b, namespace="b")
        before = policy.score(state_b, cands_b, "plan").copy()
        state_a = embed(["a task 2"])[0]
        for round_ in range(5):
            cands_a = memory.candidates(state_a, namespace="a")
            shown = policy.select(state_a, cands_a, 3, "plan").case_ids
            policy.update(
                Feedback(namespace="a", stage="plan", state=state_a, shown=shown,
                         used=shown[:1], reward=1.0 if round_ % 2 else -1.0)
            )  # fmt: skip
        after = policy.score(state_b, memory.candidates(state_b, namespace="b"), "plan")
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-7)
        # A's scores did move: the network learned, for A only.
        policy.save()
        # A fresh policy (another process) loads each namespace's own network.
        again = NeuralPolicy(memory, seed=3)
        np.testing.assert_allclose(
            again.score(state_b, memory.candidates(state_b, namespace="b"), "plan"),
            before, rtol=0, atol=1e-7,
        )  # fmt: skip
        cands_a = memory.candidates(state_a, namespace="a")
        np.testing.assert_allclose(
            again.score(state_a, cands_a, "plan"), policy.score(state_a, cands_a, "plan"),
            rtol=0, atol=1e-6,
        )  # fmt: skip
    finally:
        memory.close()


def test_get_many_for_one_namespace_leaves_out_anothers_cases(tenants: CaseMemory) -> None:
    a_id, b_id = _ids(tenants)
    assert [c.id for c in tenants.get_many([a_id, b_id], namespace="a")] == [a_id]
    assert [c.id for c in tenants.get_many([a_id, b_id], namespace="b")] == [b_id]


def test_policy_reset_of_one_namespace_drops_only_its_saved_state(
    tenants: CaseMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_agent.cli import app
    from memory_agent.store.policy_state import tenant_key

    states = tenants.policy_states
    long_ns = "n" * 100  # too long for key@namespace: saved under a hash of the namespace
    for ns in ("a", "b", long_ns):
        for key in ("neural", "value_context"):
            states.save(tenant_key(key, ns), b"x", format=1, meta={})
    states.save("neural", b"legacy", format=1, meta={})  # from before per-namespace state
    monkeypatch.setenv("MEMORY_AGENT_HOME", str(tenants.settings.home))
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", tenants.url)
    result = CliRunner().invoke(app, ["policy", "reset", "--namespace", "a", "--yes"])
    assert result.exit_code == 0, result.output
    assert "2 saved policy states" in result.output
    left = {row["key"] for row in states.summaries()}
    assert left == {
        "neural", "neural@b", "value_context@b",
        tenant_key("neural", long_ns), tenant_key("value_context", long_ns),
    }  # fmt: skip
    assert states.delete_namespace(long_ns) == 2
    assert states.delete_namespace("default", legacy=True) == 1  # the legacy row goes too
    assert {row["key"] for row in states.summaries()} == {"neural@b", "value_context@b"}
