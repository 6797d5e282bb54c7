"""`memory-agent policy ...` and `memory-agent bench policy` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.policies.base import Feedback
from memory_agent.policies.value import ValuePolicy
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase


def learned_store(home: Path) -> list[int]:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, 384)).astype(np.float32)
    with CaseMemory(Settings(home=home)) as memory:
        ids = memory.add_many(
            [NewCase(task=f"task number {i}") for i in range(6)], embeddings=vectors
        )
        policy = ValuePolicy(memory)
        for _ in range(3):
            policy.update(Feedback("default", "plan", vectors[0], ids[:3], [ids[2]], 1.0))
        policy.update(Feedback("default", "refine", vectors[0], ids[:2], [ids[0]], 0.5))
    return ids


def test_policy_stats_and_reset(isolated_home: Path) -> None:
    ids = learned_store(isolated_home)
    runner = CliRunner()
    result = runner.invoke(app, ["policy", "stats", "--json", "--top", "2"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert set(stats["stages"]) == {"plan", "refine"}
    plan = stats["stages"]["plan"]
    assert plan["cases"] == 3 and plan["visits"] == 9
    assert plan["top"][0]["id"] == ids[2] and plan["top"][0]["task"] == "task number 2"
    assert len(plan["bottom"]) == 2 and plan["bottom"][0]["q"] < plan["top"][0]["q"]
    table = runner.invoke(app, ["policy", "stats"])
    assert table.exit_code == 0 and "task number 2" in table.output

    result = runner.invoke(app, ["policy", "reset", "--yes"])
    assert result.exit_code == 0 and "Removed 5 learned values" in result.output
    empty = json.loads(runner.invoke(app, ["policy", "stats", "--json"]).output)
    assert empty["stages"] == {}


def test_policy_stats_on_unknown_namespace_is_empty_not_a_crash(isolated_home: Path) -> None:
    learned_store(isolated_home)
    result = CliRunner().invoke(app, ["policy", "stats", "--namespace", "nobody", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["stages"] == {}


@pytest.mark.slow
def test_bench_policy_runs_and_reports_json(tmp_path: Path) -> None:
    plot = tmp_path / "curve.png"
    result = CliRunner().invoke(
        app,
        ["bench", "policy", "--episodes", "60", "--seeds", "1", "--json",
         "--policies", "similarity,value,oracle", "--plot", str(plot)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["policies"]) == {"similarity", "value", "oracle"}
    for figures in report["policies"].values():
        assert 0.0 <= figures["final_reward"] <= 1.0 and figures["regret"] >= -1e-9
    assert report["policies"]["oracle"]["regret"] == 0.0
    value = report["policies"]["value"]
    (only,) = value["per_seed"]
    assert only["seed"] == 0 and only["final_reward"] == value["final_reward"]
    oracle = report["policies"]["oracle"]["final_reward"]
    assert only["vs_oracle"] == pytest.approx(value["final_reward"] / oracle, abs=1e-3)
    assert report["policies"]["oracle"]["per_seed"][0]["vs_oracle"] == 1.0
    assert value["vs_oracle_spread"] == 0.0  # one seed: no spread
    assert "flat" in report["policies"]["value"] and "update_ms" in report["policies"]["value"]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_policy_rejects_unknown_policy() -> None:
    result = CliRunner().invoke(app, ["bench", "policy", "--policies", "similarity,magic"])
    assert result.exit_code == 2 and "Unknown policy 'magic'" in result.output
