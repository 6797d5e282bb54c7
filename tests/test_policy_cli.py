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
    # Six live cases, three credited at the plan stage: three never left the prior.
    assert stats["live_cases"] == 6 and plan["at_prior"] == 3
    assert stats["stages"]["refine"]["at_prior"] == 4
    spread = plan["distribution"]
    assert spread["quantiles"]["max"] == pytest.approx(plan["max_q"])
    assert spread["quantiles"]["min"] == pytest.approx(plan["min_q"])
    assert sum(n for _, n in spread["histogram"]) == 3
    assert plan["top"][0]["id"] == ids[2] and plan["top"][0]["task"] == "task number 2"
    assert len(plan["bottom"]) == 2 and plan["bottom"][0]["q"] < plan["top"][0]["q"]
    table = runner.invoke(app, ["policy", "stats"])
    assert table.exit_code == 0 and "task number 2" in table.output
    assert "3 of 6 live cases never moved from the prior" in table.output

    result = runner.invoke(app, ["policy", "reset", "--yes"])
    assert result.exit_code == 0 and "Removed 5 learned values" in result.output
    empty = json.loads(runner.invoke(app, ["policy", "stats", "--json"]).output)
    assert empty["stages"] == {}


def test_policy_stats_on_unknown_namespace_is_empty_not_a_crash(isolated_home: Path) -> None:
    learned_store(isolated_home)
    result = CliRunner().invoke(app, ["policy", "stats", "--namespace", "nobody", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["stages"] == {}


@pytest.mark.slow
def test_bench_policy_reports_paired_differences_and_intervals(tmp_path: Path) -> None:
    """Two seeds: per policy the ratio to the oracle with its interval over seeds, the paired
    difference to similarity and of cited minus flat credit, each from the per-seed figures;
    and the ablation of neural without the case embedding."""
    plot = tmp_path / "curve.png"
    result = CliRunner().invoke(
        app,
        ["bench", "policy", "--episodes", "60", "--seeds", "2", "--json",
         "--policies", "similarity,value,neural-no-emb,oracle", "--plot", str(plot)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["policies"]) == {"similarity", "value", "neural-no-emb", "oracle"}
    assert report["policies"]["oracle"]["regret"] == 0.0
    baseline = report["policies"]["similarity"]["per_seed"]
    similarity = {r["seed"]: r["final_reward"] for r in baseline}
    value = report["policies"]["value"]
    ours = {r["seed"]: r["final_reward"] for r in value["per_seed"]}
    flat = {r["seed"]: r["final_reward"] for r in value["flat"]["per_seed"]}
    assert sorted(ours) == [0, 1]
    diffs = [ours[s] - similarity[s] for s in (0, 1)]
    assert value["minus_similarity"]["per_seed"] == pytest.approx(diffs, abs=1e-3)
    assert value["minus_similarity"]["mean"] == pytest.approx(np.mean(diffs), abs=1e-3)
    low, high = value["minus_similarity"]["ci95"]
    assert low <= value["minus_similarity"]["mean"] <= high
    cited_flat = [ours[s] - flat[s] for s in (0, 1)]
    assert value["cited_minus_flat"]["per_seed"] == pytest.approx(cited_flat, abs=1e-3)
    ratios = [r["vs_oracle"] for r in value["per_seed"]]
    low, high = value["vs_oracle_ci95"]
    assert low <= float(np.mean(ratios)) <= high and high - low > 0
    ablation = report["policies"]["neural-no-emb"]
    assert "flat" not in ablation and "minus_similarity" in ablation
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_policy_rejects_unknown_policy() -> None:
    result = CliRunner().invoke(app, ["bench", "policy", "--policies", "similarity,magic"])
    assert result.exit_code == 2 and "Unknown policy 'magic'" in result.output
