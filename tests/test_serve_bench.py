"""`memory-agent bench serve`'s load generator against a real server (hash embedder): every
request is sent and answered on keep-alive connections, errors are counted with their
message, and the server really did the work (its run log holds each retrieval)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from hash_embedder import HashEmbedder
from http_server import serving

from memory_agent.serve_bench import load
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


def test_load_sends_every_request_and_counts_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serving(home) as url:
        added = httpx.post(f"{url}/v1/cases", json={"task": "sort a list", "answer": "sorted"})
        assert added.status_code == 201
        good = asyncio.run(load(url, "/v1/retrieve", [{"task": f"sort {i}"} for i in range(40)], 4))
        bad = asyncio.run(load(url, "/v1/retrieve", [{"task": "sort", "k": 0}] * 5, 2))
    assert good["requests"] == 40 and good["errors"] == 0 and good["per_s"] > 0
    assert 0 < good["p50_ms"] <= good["p95_ms"] <= good["p99_ms"]
    assert bad["errors"] == 5 and bad["first_error"].startswith("422 ")
    assert "k" in bad["first_error"]
    with CaseMemory(Settings(home=home), embedder=HashEmbedder()) as memory:  # type: ignore[arg-type]
        tasks = [run.task for run in memory.run_log().recent(limit=100)]
    assert sorted(tasks) == sorted(f"sort {i}" for i in range(40))
