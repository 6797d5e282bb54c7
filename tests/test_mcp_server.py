"""The memory for other agents: `MemoryService` directly, and `memory-agent mcp` as a real
stdio subprocess driven by the mcp SDK's client (real MiniLM, a temporary data dir)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memory_agent
from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.service import MemoryService
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

PYTHON_TASKS = [
    ("How do I reverse a list in Python?", "Use slicing with a negative step.", "xs[::-1]"),
    ("Sort a Python dict by its values", "sorted() with a key function.",
     "sorted(d.items(), key=lambda kv: kv[1])"),
    ("Remove duplicates from a Python list keeping order", "dict.fromkeys keeps order.",
     "list(dict.fromkeys(xs))"),
]  # fmt: skip
GEO_TASK = ("What is the capital of France?", "Recall it.", "Paris")


@pytest.fixture
def service(isolated_home: Path, minilm: Any) -> Iterator[MemoryService]:
    settings = Settings(home=isolated_home, policy={"name": "value", "k": 2})
    memory = CaseMemory(settings, embedder=minilm)
    with MemoryService(settings, memory=memory) as svc:
        yield svc
    memory.close()


# ---------------------------------------------------------------------- MemoryService


def test_retrieve_report_outcome_changes_learned_values(service: MemoryService) -> None:
    ids = [service.record(t, p, a, 1.0, namespace="py") for t, p, a in PYTHON_TASKS]
    found = service.retrieve("reverse a python list", namespace="py")
    assert found["namespace"] == "py" and found["policy"] == "value"
    assert len(found["cases"]) == 2 and found["shortlist_size"] == 3
    best = found["cases"][0]
    assert best["case_id"] == ids[0] and best["task"] == PYTHON_TASKS[0][0]
    assert best["answer"] == "xs[::-1]" and best["similarity"] > 0.8
    assert {"score", "explored", "value", "visits", "plan"} <= set(best)
    assert best["visits"] == 0

    shown = [c["case_id"] for c in found["cases"]]
    out = service.report_outcome(found["retrieval_id"], 1.0, [ids[0]])
    assert out["credited"] == [ids[0]] and out["shown"] == shown
    learned = {c["case_id"]: c for c in out["learned"]}
    assert learned[ids[0]]["visits"] == 1 and learned[ids[0]]["value"] > 0.5  # toward 1
    other = next(i for i in shown if i != ids[0])
    assert learned[other]["value"] < 0.5  # shown, not used: toward the unused target 0
    stats = service.memory.get(ids[0], namespace="py").stats["plan"]
    assert stats.visits == 1 and stats.q_value == pytest.approx(learned[ids[0]]["value"], abs=1e-4)
    assert service.stats("py")["learned"][str(ids[0])]["visits"] == 1

    with pytest.raises(InvalidInputError, match="already has an outcome"):
        service.report_outcome(found["retrieval_id"], 1.0, [ids[0]])
    # The retrieval is in the run log, so a new service (a restarted server) can take it.
    again = service.retrieve("reverse a python list", namespace="py")
    with MemoryService(service.settings, memory=service.memory) as fresh:
        fresh.report_outcome(again["retrieval_id"], 0.0)  # flat: every shown case
    assert service.memory.get(ids[0], namespace="py").stats["plan"].visits == 2


def test_similarity_policy_is_credited_by_the_runtime(isolated_home: Path, minilm: Any) -> None:
    settings = Settings(home=isolated_home, policy={"name": "similarity", "k": 1})
    with (
        CaseMemory(settings, embedder=minilm) as memory,
        MemoryService(settings, memory=memory) as svc,
    ):
        case_id = svc.record(*PYTHON_TASKS[0], reward=1.0)
        found = svc.retrieve(PYTHON_TASKS[0][0])
        assert [c["case_id"] for c in found["cases"]] == [case_id]
        svc.report_outcome(found["retrieval_id"], 1.0, [case_id])
        assert memory.get(case_id).stats["plan"].visits == 1


def test_retrieve_reports_the_policys_value_for_this_task(isolated_home: Path, minilm: Any) -> None:
    """`track` ranks by a case's record on tasks like this one, not by its stored running
    value: a retrieval says what ranked each case (task_value, evidence); similarity has none."""
    settings = Settings(home=isolated_home, policy={"name": "track", "k": 2})
    with (
        CaseMemory(settings, embedder=minilm) as memory,
        MemoryService(settings, memory=memory) as svc,
    ):
        ids = [svc.record(t, p, a, 1.0) for t, p, a in PYTHON_TASKS]
        first = svc.retrieve("reverse a python list")
        fresh = {c["case_id"]: c for c in first["cases"]}
        assert fresh[ids[0]]["task_value"] == pytest.approx(0.5)  # no record yet: even
        assert fresh[ids[0]]["evidence"] == 0.0
        svc.report_outcome(first["retrieval_id"], 0.0, [ids[0]])  # used, and it failed
        again = {c["case_id"]: c for c in svc.retrieve("reverse a python list")["cases"]}
        assert again[ids[0]]["task_value"] < 0.5 and again[ids[0]]["evidence"] > 0.0
        assert again[ids[0]]["visits"] == 1  # the stored statistics move too
    plain = Settings(home=isolated_home / "plain", policy={"name": "similarity"})
    with (
        CaseMemory(plain, embedder=minilm) as memory,
        MemoryService(plain, memory=memory) as svc,
    ):
        svc.record(*PYTHON_TASKS[0], reward=1.0)
        (case,) = svc.retrieve(PYTHON_TASKS[0][0])["cases"]
        assert case["task_value"] is None and case["evidence"] is None


def test_gaps_name_the_tasks_whose_shown_cases_keep_failing(service: MemoryService) -> None:
    """Outcomes reported to `retrieve` are what the gaps are read from: reversal tasks that
    failed with the reversal case shown make a gap; the dict task that succeeded does not."""
    ids = [service.record(t, p, a, 1.0, namespace="py") for t, p, a in PYTHON_TASKS]
    for word in ("items", "names", "rows", "scores", "values", "words"):
        found = service.retrieve(f"How do I reverse a list of {word} in Python?", namespace="py")
        service.report_outcome(found["retrieval_id"], 0.0)  # every shown case failed
    found = service.retrieve("Sort a Python dict by its keys", namespace="py")
    service.report_outcome(found["retrieval_id"], 1.0)
    report = service.gaps("py", similar=0.7)
    assert report["runs_read"] == 7 and report["settings"]["similar"] == 0.7
    (gap,) = report["gaps"]
    assert gap["runs"] == 6 and gap["successes"] == 0
    shown = {c["case_id"]: c for c in gap["cases"]}
    assert ids[0] in shown and all(c["succeeded"] == 0 for c in gap["cases"])
    assert sum(c["shown"] for c in gap["cases"]) == 6 * 2  # k = 2 cases a retrieval
    assert gap["case_tasks"][str(ids[0])] == PYTHON_TASKS[0][0]
    assert service.gaps("py", max_rate=0.0, min_runs=7)["gaps"] == []  # six are too few
    assert service.gaps("other")["runs_read"] == 0
    with pytest.raises(InvalidInputError, match="similar must be a number from 0 to 1"):
        service.gaps("py", similar=1.5)


@pytest.mark.parametrize("reward", [5, -0.5, math.nan, math.inf, "1", True])
def test_bad_rewards_are_refused(service: MemoryService, reward: Any) -> None:
    case_id = service.record(*PYTHON_TASKS[0])
    found = service.retrieve(PYTHON_TASKS[0][0])
    with pytest.raises(InvalidInputError, match="reward"):
        service.report_outcome(found["retrieval_id"], reward, [case_id])
    with pytest.raises(InvalidInputError, match="reward"):
        service.record("another task", reward=reward)


def test_malformed_calls_are_clear_errors(service: MemoryService) -> None:
    case_id = service.record(*PYTHON_TASKS[0])
    found = service.retrieve(PYTHON_TASKS[0][0])
    with pytest.raises(InvalidInputError, match="Unknown retrieval id"):
        service.report_outcome("no-such-retrieval", 1.0)
    with pytest.raises(InvalidInputError, match="Unknown retrieval id"):
        service.report_outcome(found["retrieval_id"][:8], 1.0)  # no prefixes: exact ids only
    with pytest.raises(InvalidInputError, match="was not shown"):
        service.report_outcome(found["retrieval_id"], 1.0, [case_id + 99])
    with pytest.raises(CaseNotFoundError, match="No case with id 999"):
        service.get(999)
    with pytest.raises(InvalidInputError, match="task is empty"):
        service.record("")
    with pytest.raises(InvalidInputError, match="Namespace"):
        service.list("../etc")
    with pytest.raises(InvalidInputError, match="k must be"):
        service.retrieve("task", k=0)
    with pytest.raises(InvalidInputError, match="limit must be"):
        service.list(limit=0)


def test_namespaces_are_separate(service: MemoryService) -> None:
    a = service.record(*PYTHON_TASKS[0], namespace="a")
    b = service.record(*GEO_TASK, namespace="b")
    assert [c["case_id"] for c in service.retrieve(PYTHON_TASKS[0][0], namespace="b")["cases"]] == [
        b
    ]
    assert service.retrieve("anything", namespace="empty")["cases"] == []
    assert [c["id"] for c in service.list("a")] == [a] and service.list("empty") == []
    with pytest.raises(CaseNotFoundError, match="namespace 'b'"):
        service.get(a, namespace="b")
    with pytest.raises(CaseNotFoundError):
        service.delete(a, namespace="b")
    assert service.get(a, namespace="a")["task"] == PYTHON_TASKS[0][0]
    service.delete(a, namespace="a")
    assert service.list("a") == []
    assert service.stats("b")["cases"] == 1 and "database" not in service.stats("b")


# ---------------------------------------------------------------------- the MCP server


def _server_env(home: Path) -> dict[str, str]:
    """Runs the code under test (this checkout) with its data in `home`, offline."""
    source = str(Path(memory_agent.__file__).resolve().parent.parent)
    return {
        "MEMORY_AGENT_HOME": str(home),
        "MEMORY_AGENT_POLICY_K": "2",
        "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _data(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def _error(result: Any) -> str:
    assert result.is_error, result
    return " ".join(getattr(c, "text", "") for c in result.content)


async def _session_flow(home: Path) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memory_agent", "mcp"], env=_server_env(home)
    )
    with open(home.parent / "server.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert set(tools) == {
                    "retrieve_cases",
                    "record_case",
                    "report_outcome",
                    "list_cases",
                    "get_case",
                    "delete_case",
                    "memory_stats",
                    "find_gaps",
                }
                schema = tools["report_outcome"].input_schema["properties"]["reward"]
                assert "0 failure" in str(schema) and tools["retrieve_cases"].description

                ids = []
                for task, plan, answer in PYTHON_TASKS:
                    args = {"task": task, "plan": plan, "answer": answer, "reward": 1.0,
                            "namespace": "a"}  # fmt: skip
                    ids.append(_data(await session.call_tool("record_case", args))["case_id"])
                geo = _data(await session.call_tool(
                    "record_case", {"task": GEO_TASK[0], "answer": "Paris", "namespace": "b"}
                ))["case_id"]  # fmt: skip

                found = _data(await session.call_tool(
                    "retrieve_cases", {"task": "reverse a python list", "namespace": "a"}
                ))  # fmt: skip
                assert [c["case_id"] for c in found["cases"]][0] == ids[0]
                assert len(found["cases"]) == 2
                first = found["cases"][0]
                assert first["similarity"] > 0.8 and first["explored"] is False
                assert first["visits"] == 0 and first["answer"] == "xs[::-1]"

                # Malformed calls: an error message each, and the server keeps serving.
                errors = {
                    "unknown case": _error(await session.call_tool(
                        "get_case", {"case_id": 4242, "namespace": "a"})),
                    "reward 5": _error(await session.call_tool(
                        "report_outcome", {"retrieval_id": found["retrieval_id"], "reward": 5})),
                    "reward NaN": _error(await session.call_tool(
                        "report_outcome",
                        {"retrieval_id": found["retrieval_id"], "reward": "NaN"})),
                    "unknown retrieval": _error(await session.call_tool(
                        "report_outcome", {"retrieval_id": "nope", "reward": 1.0})),
                    "missing task": _error(await session.call_tool("retrieve_cases", {})),
                    "bad namespace": _error(await session.call_tool(
                        "list_cases", {"namespace": "../x"})),
                }  # fmt: skip

                outcome = _data(await session.call_tool(
                    "report_outcome",
                    {"retrieval_id": found["retrieval_id"], "reward": 1.0,
                     "used_case_ids": [ids[0]]},
                ))  # fmt: skip
                case = _data(
                    await session.call_tool("get_case", {"case_id": ids[0], "namespace": "a"})
                )
                stats = _data(await session.call_tool("memory_stats", {"namespace": "a"}))

                # Namespace b never sees a's cases.
                in_b = _data(
                    await session.call_tool(
                        "retrieve_cases", {"task": "reverse a python list", "namespace": "b"}
                    )
                )
                listed_b = _data(await session.call_tool("list_cases", {"namespace": "b"}))
                cross = _error(await session.call_tool(
                    "get_case", {"case_id": ids[0], "namespace": "b"}))  # fmt: skip

                resource = await session.read_resource(f"case://a/{ids[0]}")
                from_resource = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
                try:
                    await session.read_resource(f"case://b/{ids[0]}")
                    cross_resource = "no error"
                except Exception as exc:  # the SDK raises the JSON-RPC error
                    cross_resource = str(exc)

                _data(await session.call_tool("delete_case", {"case_id": ids[2], "namespace": "a"}))
                after_delete = _data(await session.call_tool("list_cases", {"namespace": "a"}))
    return {
        "ids": ids, "geo": geo, "found": found, "errors": errors, "outcome": outcome,
        "case": case, "stats": stats, "in_b": in_b, "listed_b": listed_b, "cross": cross,
        "from_resource": from_resource, "cross_resource": cross_resource,
        "after_delete": after_delete,
    }  # fmt: skip


@pytest.mark.slow
def test_mcp_server_over_stdio(isolated_home: Path) -> None:
    pytest.importorskip("mcp", reason="needs pip install 'memory-agent[mcp]'")
    isolated_home.mkdir(parents=True, exist_ok=True)
    r = asyncio.run(asyncio.wait_for(_session_flow(isolated_home), timeout=120))
    ids = r["ids"]

    errors = r["errors"]
    assert "No case with id 4242" in errors["unknown case"]
    assert "less than or equal to 1" in errors["reward 5"]
    assert "reward" in errors["reward NaN"]
    assert "Unknown retrieval id 'nope'" in errors["unknown retrieval"]
    assert "task" in errors["missing task"]
    assert "Namespace '../x' is not valid" in errors["bad namespace"]

    learned = {c["case_id"]: c for c in r["outcome"]["learned"]}
    assert learned[ids[0]]["visits"] == 1 and learned[ids[0]]["value"] > 0.5
    assert r["case"]["stats"]["plan"]["visits"] == 1
    assert r["stats"]["learned"][str(ids[0])]["visits"] == 1 and r["stats"]["cases"] == 3

    assert [c["case_id"] for c in r["in_b"]["cases"]] == [r["geo"]]
    assert [c["id"] for c in r["listed_b"]["cases"]] == [r["geo"]]
    assert "No case with id" in r["cross"] and "namespace 'b'" in r["cross"]
    assert r["from_resource"]["id"] == ids[0] and r["from_resource"]["namespace"] == "a"
    assert "No case" in r["cross_resource"]
    assert [c["id"] for c in r["after_delete"]["cases"]] == [ids[1], ids[0]]

    # The learning is in the store: a fresh process reads it back.
    with CaseMemory(Settings(home=isolated_home)) as memory:
        stats = memory.get(ids[0], namespace="a").stats["plan"]
        assert stats.visits == 1 and stats.q_value == pytest.approx(
            learned[ids[0]]["value"], abs=1e-4
        )
        assert memory.run_log().get(r["found"]["retrieval_id"]).reward == 1.0


def test_missing_mcp_package_says_how_to_install(isolated_home: Path) -> None:
    code = ("import sys; sys.modules['mcp'] = None; sys.argv = ['memory-agent', 'mcp']; "
            "from memory_agent.cli import main; main()")  # fmt: skip
    env = {**os.environ, **_server_env(isolated_home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert "pip install 'memory-agent[mcp]'" in done.stderr
    assert not (isolated_home / "memory.db").exists()  # refused before opening the store
