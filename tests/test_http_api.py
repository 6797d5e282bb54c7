"""The HTTP API (`memory-agent serve`) against a real uvicorn server on loopback, started by
the tests: raw httpx requests and `MemoryClient` / `AsyncMemoryClient`. The served store
embeds with the HashEmbedder (tests/hash_service.py): these tests are about the API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import serving

from memory_agent.client import (
    ApiAuthError,
    ApiInputError,
    ApiNotFoundError,
    AsyncMemoryClient,
    MemoryClient,
)
from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASKS = [
    ("How do I reverse a list in Python?", "Use slicing with a negative step.", "xs[::-1]"),
    ("Sort a Python dict by its values", "sorted() with a key.", "sorted(d.items(), key=f)"),
    ("Remove duplicates from a list keeping order", "dict.fromkeys.", "list(dict.fromkeys(xs))"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One server for the module (each test uses its own namespaces), token on, k=2, a 64 KiB
    body limit."""
    home = tmp_path_factory.mktemp("served") / "home"
    with serving(home, "--token", TOKEN, POLICY_K="2",
                 SERVE_MAX_REQUEST_BYTES=str(64 * 1024)) as url:  # fmt: skip
        yield url, home


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["type"] and error["message"]
    return str(error["message"])


def test_learning_loop_over_raw_http(server: tuple[str, Path]) -> None:
    url, home = server
    with httpx.Client(base_url=url, headers=AUTH) as http:
        ids = [
            _ok(http.post("/v1/cases", json={"task": t, "plan": p, "answer": a, "reward": 1.0,
                                             "namespace": "loop"}), 201)["case_id"]
            for t, p, a in TASKS
        ]  # fmt: skip
        found = _ok(http.post("/v1/retrieve", json={"task": TASKS[0][0], "namespace": "loop"}))
        assert found["namespace"] == "loop" and found["shortlist_size"] == 3
        assert len(found["cases"]) == 2
        best = found["cases"][0]
        assert best["case_id"] == ids[0] and best["similarity"] == pytest.approx(1.0, abs=1e-3)
        assert best["answer"] == "xs[::-1]" and best["visits"] == 0
        assert best["value"] is None or best["value"] == pytest.approx(0.5, abs=0.2)
        shown = [c["case_id"] for c in found["cases"]]

        outcome = {"retrieval_id": found["retrieval_id"], "reward": 1.0, "used_case_ids": [ids[0]]}
        out = _ok(http.post("/v1/outcomes", json=outcome))
        assert out["credited"] == [ids[0]] and out["shown"] == shown
        learned = {c["case_id"]: c for c in out["learned"]}
        assert learned[ids[0]]["visits"] == 1 and learned[ids[0]]["value"] > 0.5
        other = next(i for i in shown if i != ids[0])
        # The default policy (track) credits only the cases the planner used: a case shown and
        # passed over keeps no value and no visit.
        assert learned[other]["value"] is None and learned[other]["visits"] == 0

        case = _ok(http.get(f"/v1/cases/{ids[0]}", params={"namespace": "loop"}))
        assert case["stats"]["plan"]["visits"] == 1
        stats = _ok(http.get("/v1/stats", params={"namespace": "loop"}))
        assert stats["cases"] == 3 and stats["learned"][str(ids[0])]["visits"] == 1
        # The next retrieval shows the learned value as a reason.
        again = _ok(http.post("/v1/retrieve", json={"task": TASKS[0][0], "namespace": "loop"}))
        first = next(c for c in again["cases"] if c["case_id"] == ids[0])
        assert first["visits"] == 1 and first["value"] == learned[ids[0]]["value"]

        assert [c["id"] for c in _ok(http.get("/v1/cases", params={"namespace": "loop"}))[
            "cases"]] == ids[::-1]  # fmt: skip
        assert _ok(http.delete(f"/v1/cases/{ids[2]}", params={"namespace": "loop"})) == {
            "deleted": ids[2]}  # fmt: skip
        _refused(http.get(f"/v1/cases/{ids[2]}", params={"namespace": "loop"}), 404)

        # One outcome reported, a success: nothing to flag yet.
        gaps = _ok(http.get("/v1/gaps", params={"namespace": "loop"}))
        assert gaps["runs_read"] == 1 and gaps["gaps"] == []
        _refused(http.get("/v1/gaps", params={"namespace": "loop", "similar": 2}), 422)

        schema = _ok(http.get("/openapi.json"))
        assert {"/v1/retrieve", "/v1/cases", "/v1/outcomes", "/v1/stats",
                "/v1/gaps"} <= set(schema["paths"])  # fmt: skip

    # The learning is in the store: another process reads it back.
    with CaseMemory(Settings(home=home)) as memory:
        stats_row = memory.get(ids[0], namespace="loop").stats["plan"]
        assert stats_row.visits == 1
        assert stats_row.q_value == pytest.approx(learned[ids[0]]["value"], abs=1e-4)


def test_auth_rejects_missing_and_wrong_tokens(server: tuple[str, Path]) -> None:
    url, _ = server
    body = {"task": "anything", "namespace": "auth"}
    with httpx.Client(base_url=url) as http:
        missing = http.post("/v1/retrieve", json=body)
        assert "Missing bearer token" in _refused(missing, 401)
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = http.post("/v1/retrieve", json=body, headers={"Authorization": "Bearer nope"})
        assert "token is wrong" in _refused(wrong, 401)
        prefix = http.post("/v1/retrieve", json=body,
                           headers={"Authorization": f"Bearer {TOKEN[:-1]}"})  # fmt: skip
        _refused(prefix, 401)
        basic = http.get("/v1/cases", headers={"Authorization": f"Basic {TOKEN}"})
        _refused(basic, 401)
        for path in ("/v1/cases", "/v1/stats", "/v1/cases/1", "/v1/gaps"):
            _refused(http.get(path), 401)
        _refused(http.delete("/v1/cases/1"), 401)
        _refused(http.post("/v1/outcomes", json={"retrieval_id": "x", "reward": 1}), 401)
        assert _ok(http.get("/health"))["status"] == "ok"  # liveness needs no token
        assert _ok(http.post("/v1/retrieve", json=body, headers=AUTH))["cases"] == []

    with MemoryClient(url, token="wrong") as client, pytest.raises(ApiAuthError, match="wrong"):
        client.stats("auth")


def test_oversized_and_malformed_requests_get_a_4xx_with_a_message(
    server: tuple[str, Path],
) -> None:
    url, _ = server
    with httpx.Client(base_url=url, headers=AUTH) as http:
        big = http.post("/v1/cases", json={"task": "x" * (100 * 1024), "namespace": "bad"})
        assert "at most 65,536" in _refused(big, 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"task": "'
            for _ in range(100):
                yield b"y" * 1024
            yield b'"}'

        chunked = http.post("/v1/cases", content=chunks(),
                            headers={"Content-Type": "application/json"})  # fmt: skip
        assert "MEMORY_AGENT_SERVE_MAX_REQUEST_BYTES" in _refused(chunked, 413)

        json_type = {"Content-Type": "application/json"}
        bad_json = http.post("/v1/retrieve", content=b'{"task": "x",}', headers=json_type)
        assert "not valid JSON" in _refused(bad_json, 400)
        not_object = http.post("/v1/retrieve", content=b"[1, 2]", headers=json_type)
        assert "JSON object" in _refused(not_object, 422)
        no_type = http.post("/v1/retrieve", content=b'{"task": "x"}')
        assert "Content-Type: application/json" in _refused(no_type, 415)
        missing = _refused(http.post("/v1/retrieve", json={"namespace": "bad"}), 422)
        assert "task: is required" in missing
        typo = _refused(http.post("/v1/retrieve", json={"task": "x", "kk": 3}), 422)
        assert "kk: is not a field" in typo
        reward = _refused(http.post("/v1/cases", json={"task": "x", "reward": 5}), 422)
        assert "reward" in reward and "less than or equal to 1" in reward and "got 5" in reward
        k = _refused(http.post("/v1/retrieve", json={"task": "x", "k": 0}), 422)
        assert "greater than or equal to 1" in k
        empty = _refused(http.post("/v1/cases", json={"task": "   ", "namespace": "bad"}), 400)
        assert "task is empty" in empty
        ns = _refused(http.get("/v1/cases", params={"namespace": "../etc"}), 400)
        assert "Namespace '../etc' is not valid" in ns
        unknown = _refused(http.post("/v1/outcomes", json={"retrieval_id": "nope", "reward": 1}),
                           400)  # fmt: skip
        assert "Unknown retrieval id 'nope'" in unknown
        assert "No case with id 987654" in _refused(http.get("/v1/cases/987654"), 404)
        assert "case_id: Input should be a valid integer" in _refused(
            http.get("/v1/cases/abc"), 422
        )
        assert "No endpoint /v1/nothing" in _refused(http.get("/v1/nothing"), 404)
        assert "not allowed" in _refused(http.put("/v1/cases/1", json={}), 405)
        vector = _refused(http.post("/v1/retrieve", json={"task": "x", "vector": [0.1, 0.2]}),
                          400)  # fmt: skip
        assert "has 2 numbers but the store's embeddings have 32" in vector
        # ... and the server keeps serving.
        assert _ok(http.post("/v1/cases", json={"task": "still here", "namespace": "bad"}), 201)


def test_namespace_a_never_sees_namespace_b(server: tuple[str, Path]) -> None:
    url, _ = server
    with MemoryClient(url, token=TOKEN, namespace="tenant-a") as a, \
            MemoryClient(url, token=TOKEN, namespace="tenant-b") as b:  # fmt: skip
        a_ids = [a.record(t, p, ans, 1.0) for t, p, ans in TASKS]
        b_id = b.add("What is the capital of France?", answer="Paris", reward=1.0)
        in_b = b.retrieve(TASKS[0][0], k=5)
        assert [c["case_id"] for c in in_b["cases"]] == [b_id]
        assert [c["id"] for c in b.list()] == [b_id]
        assert {c["id"] for c in a.list_cases(limit=10)} == set(a_ids)
        with pytest.raises(ApiNotFoundError, match="namespace 'tenant-b'") as caught:
            b.get(a_ids[0])
        assert isinstance(caught.value, CaseNotFoundError)
        with pytest.raises(CaseNotFoundError):
            b.delete(a_ids[0])
        # An outcome for a's retrieval credits only a's cases, even when sent by b's client.
        found = a.retrieve(TASKS[1][0])
        with pytest.raises(ApiInputError, match="was not shown"):
            b.report_outcome(found["retrieval_id"], 1.0, [b_id])
        assert b.stats()["cases"] == 1 and b.stats()["learned"] == {}
        assert a.get(a_ids[0])["namespace"] == "tenant-a"
        assert b.retrieve("anything", namespace="nobody-here")["cases"] == []


def test_memory_client_learning_loop_sync_and_async(server: tuple[str, Path]) -> None:
    url, _ = server
    with MemoryClient(url, token=TOKEN, namespace="client") as memory:
        ids = [memory.record(t, p, a, 1.0) for t, p, a in TASKS]
        found = memory.retrieve(TASKS[2][0], k=3)
        assert found["cases"][0]["case_id"] == ids[2]
        out = memory.report_outcome(found["retrieval_id"], 0.0, [ids[2]])
        learned = {c["case_id"]: c for c in out["learned"]}
        assert learned[ids[2]]["visits"] == 1 and learned[ids[2]]["value"] < 0.5
        assert memory.get(ids[2])["stats"]["plan"]["visits"] == 1
        with pytest.raises(InvalidInputError, match="already has an outcome"):
            memory.report_outcome(found["retrieval_id"], 1.0)
        assert memory.health()["status"] == "ok"
        # The one failure is read, and one run is too few for a gap at min_runs 2.
        gaps = memory.gaps(min_runs=2, similar=0.5)
        assert gaps["runs_read"] == 1 and gaps["settings"]["min_runs"] == 2 and not gaps["gaps"]

    async def flow() -> tuple[dict[str, Any], dict[str, Any], int]:
        async with AsyncMemoryClient(url, token=TOKEN, namespace="client") as memory:
            # Concurrent retrieves: the server embeds their queries together.
            found = await asyncio.gather(*(memory.retrieve(t) for t, _, _ in TASKS))
            out = await memory.report_outcome(found[0]["retrieval_id"], 1.0)  # flat credit
            new_id = await memory.add("A fourth task", answer="4")
            await memory.delete(new_id)
            assert (await memory.gaps())["runs_read"] == 2
            return found[0], out, len(await memory.list())

    found, out, listed = asyncio.run(flow())
    assert found["cases"][0]["case_id"] == ids[0]
    assert out["credited"] == [c["case_id"] for c in found["cases"]]  # all shown
    assert listed == 3


def test_two_worker_processes_stay_consistent(tmp_path: Path) -> None:
    """Two uvicorn workers over one SQLite store: a case one worker adds is retrieved by the
    other at once, and an outcome one worker applies shows in the other's answers."""
    home = tmp_path / "home"
    with serving(home, "--workers", "2", INDEX_SYNC_INTERVAL="0", POLICY_K="3") as url:
        added: dict[int, str] = {}
        workers_seen: set[str] = set()
        # A new connection per request: the kernel hands each to either worker.
        for i in range(40):
            response = httpx.post(f"{url}/v1/cases", json={"task": f"task number {i}",
                                  "answer": str(i), "namespace": "shared"})  # fmt: skip
            added[_ok(response, 201)["case_id"]] = response.headers["x-memory-worker"]
            workers_seen.add(response.headers["x-memory-worker"])
            # Read-after-write through whichever worker takes the next connection.
            query = {"task": f"task number {i}", "namespace": "shared"}
            found = httpx.post(f"{url}/v1/retrieve", json=query)
            workers_seen.add(found.headers["x-memory-worker"])
            assert _ok(found)["cases"][0]["answer"] == str(i), found.headers
            if len(workers_seen) == 2 and i >= 10:
                break
        assert len(workers_seen) == 2, "the requests never reached the second worker"
        assert len(set(added.values())) >= 1

        # Outcomes applied by either worker are seen by both.
        target = next(iter(added))
        for _ in range(6):
            query = {"task": "task number 0", "namespace": "shared"}
            found = _ok(httpx.post(f"{url}/v1/retrieve", json=query))
            outcome = {"retrieval_id": found["retrieval_id"], "reward": 1.0,
                       "used_case_ids": [target]}  # fmt: skip
            _ok(httpx.post(f"{url}/v1/outcomes", json=outcome))
        values: dict[str, set[tuple[int, float]]] = {}
        for _ in range(30):
            response = httpx.get(f"{url}/v1/cases/{target}", params={"namespace": "shared"})
            stats = _ok(response)["stats"]["plan"]
            worker = response.headers["x-memory-worker"]
            values.setdefault(worker, set()).add((stats["visits"], round(stats["q_value"], 6)))
        assert len(values) == 2, "the reads never reached the second worker"
        assert len(set.union(*values.values())) == 1, values  # both workers, one answer
        assert next(iter(set.union(*values.values())))[0] == 6
        listed = _ok(httpx.get(f"{url}/v1/stats", params={"namespace": "shared"}))
        assert listed["cases"] == len(added)
