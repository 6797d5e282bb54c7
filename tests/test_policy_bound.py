"""The upper bound of `bench policy` (evals/policy_bound.py): a learner told hidden families.

On the honest policy stream through the real store and the real MiniLM. These fail if the
bound stops learning (it must beat similarity by a wide margin), if `bound` shows a case of
another family than the task's (it is told them), if its runs stop being reproducible from
the seed, or if `bench policy` stops offering, labelling or rejecting it properly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.commands.bench_policy import _print_table
from memory_agent.errors import InvalidInputError
from memory_agent.evals.policy_benchmark import (
    ALL_KINDS,
    KINDS,
    embed_texts,
    plan_runs,
    run_policy,
)
from memory_agent.evals.policy_bound import BoundSettings, FamilyBound
from memory_agent.evals.policy_stream import make_stream
from memory_agent.policies.base import Feedback
from memory_agent.settings import Settings

EPISODES = 150
SEED = 0


@pytest.fixture(scope="module")
def stream_vectors(minilm: Any) -> tuple[Any, dict[str, Any]]:
    stream = make_stream(EPISODES, SEED)
    return stream, embed_texts(minilm, stream.texts)


def other_family_shown(stream: Any, shown_families: list[list[int]]) -> int:
    return sum(f != stream.tasks[e][0] for e, fs in enumerate(shown_families) for f in fs)


def test_bound_told_families_beats_similarity_and_shows_only_the_task_family(
    stream_vectors: tuple[Any, dict[str, Any]], isolated_home: Path
) -> None:
    stream, vectors = stream_vectors
    settings = Settings(home=isolated_home)
    similarity = run_policy("similarity", "cited", stream, vectors, settings, SEED)
    bound = run_policy("bound", "cited", stream, vectors, settings, SEED)
    task_only = run_policy("bound-task", "cited", stream, vectors, settings, SEED)
    oracle = run_policy("oracle", "cited", stream, vectors, settings, SEED)
    # Measured (seed 0, 150 episodes): similarity 0.32, bound-task 0.50, bound 0.69, oracle
    # 0.79. Knowing the cases' family as well as the task's is worth most of the bound.
    assert bound.final_reward > similarity.final_reward + 0.2
    assert bound.final_reward > task_only.final_reward + 0.1
    assert task_only.final_reward > similarity.final_reward + 0.1
    assert bound.final_reward < oracle.final_reward
    assert bound.regret < 0.5 * similarity.regret
    # Told the families, `bound` never shows another family's case; the others do (the
    # task-only bound and similarity show twins' cases), so the count can tell them apart.
    assert len(bound.shown_families) == EPISODES and all(bound.shown_families)
    assert other_family_shown(stream, bound.shown_families) == 0
    assert other_family_shown(stream, task_only.shown_families) > 50
    assert other_family_shown(stream, similarity.shown_families) > 50


def test_bound_runs_are_reproducible_from_the_seed(
    stream_vectors: tuple[Any, dict[str, Any]], isolated_home: Path
) -> None:
    stream, vectors = stream_vectors
    settings = Settings(home=isolated_home)
    once = run_policy("bound", "cited", stream, vectors, settings, SEED)
    again = run_policy("bound", "cited", stream, vectors, settings, SEED)
    assert once.rewards == again.rewards and once.shown_families == again.shown_families
    # The seed drives the Thompson draws: another seed on the same stream explores otherwise.
    other = run_policy("bound", "cited", stream, vectors, settings, SEED + 1)
    assert other.rewards != once.rewards
    # Greedy from the first episode draws nothing, so the seed no longer matters.
    greedy = BoundSettings(greedy_from=0)
    one = run_policy("bound", "cited", stream, vectors, settings, SEED, bound=greedy)
    two = run_policy("bound", "cited", stream, vectors, settings, SEED + 1, bound=greedy)
    assert one.rewards == two.rewards and one.rewards != once.rewards


STATE = np.zeros(384, dtype=np.float32)  # the bound reads the families, not the state


def feedback(shown: list[int], used: list[int], reward: float) -> Feedback:
    return Feedback("bench", "plan", STATE, shown, used, reward)


def test_bound_learns_discounted_cited_targets_per_task_family() -> None:
    bound = FamilyBound("bound", seed=0)
    bound.update(feedback([1, 2], [1], 0.8), task_family=3)
    # Prior 0.4 at weight 1: the used case gets the reward as target, the unused one 0.
    assert bound.posterior_mean(3, 1) == pytest.approx((0.4 + 0.8) / 2)
    assert bound.posterior_mean(3, 2) == pytest.approx(0.4 / 2)
    # Per task family: the same case on the twin's tasks is still at the prior.
    assert bound.posterior_mean(2, 1) == pytest.approx(0.4)
    bound.update(feedback([1], [], 0.9), task_family=3)
    # The older outcome is discounted by 0.95 in both count and sum.
    assert bound.posterior_mean(3, 1) == pytest.approx((0.4 + 0.95 * 0.8) / (1 + 0.95 + 1))
    with pytest.raises(InvalidInputError, match="cited feedback only"):
        bound.update(
            Feedback("bench", "plan", STATE, [1], [1], 1.0, citation="flat"),
            task_family=3,
        )


def test_what_a_bound_is_told_is_explicit_and_bad_settings_say_how_to_fix() -> None:
    with pytest.raises(InvalidInputError, match="needs `case_family`"):
        FamilyBound("bound", seed=0).select([], 3, task_family=0, case_family=None)
    with pytest.raises(InvalidInputError, match="task's family only"):
        FamilyBound("bound-task", seed=0).select([], 3, task_family=0, case_family={})
    with pytest.raises(InvalidInputError, match=r"sigma must be >= 0 \(got -0.1\)"):
        BoundSettings(sigma=-0.1)
    with pytest.raises(InvalidInputError, match=r"discount must lie in \(0, 1\]"):
        BoundSettings(discount=0.0)


@pytest.mark.slow
def test_bench_policy_runs_the_bounds_on_request_and_labels_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "policy", "--episodes", "60", "--seeds", "2", "--json", "--out",
         str(tmp_path), "--policies", "similarity,bound,bound-task,oracle",
         "--bound-sigma", "0.3", "--bound-greedy-from", "50"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    policies = report["policies"]
    assert list(policies) == ["similarity", "oracle", "bound", "bound-task"]
    assert report["bound_settings"]["sigma"] == 0.3
    assert report["bound_settings"]["greedy_from"] == 50
    for name in ("bound", "bound-task"):
        figures = policies[name]
        assert "family of every task" in figures["told"] and "flat" not in figures
        assert [r["seed"] for r in figures["per_seed"]] == [0, 1]
        assert figures["minus_similarity"]["per_seed"] and figures["vs_oracle_ci95"]
    assert "every case" in policies["bound"]["told"]
    assert "every case" not in policies["bound-task"]["told"]
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that rich truncates no cell
    _print_table(report)
    table = capsys.readouterr().out
    assert "│ bound ‡ " in table and "│ bound-task ‡ " in table and "│ similarity " in table
    words = " ".join(table.split())  # the console wraps long lines at its width
    assert "bound ‡: an upper bound, not a policy: told the family of every task and" in words
    assert "bound-task ‡: an upper bound, not a policy" in words


def test_the_default_run_has_no_bound() -> None:
    """Bounds run on request only: the default `bench policy` output and cost are unchanged."""
    default = app_default_policies()
    assert not any(p.startswith("bound") for p in default)
    assert not any(kind.startswith("bound") for kind, _ in plan_runs(KINDS))
    assert set(ALL_KINDS) == {*KINDS, "bound", "bound-task"}


def app_default_policies() -> list[str]:
    import inspect

    from memory_agent.commands.bench_policy import bench_policy

    default = inspect.signature(bench_policy).parameters["policies"].default
    return [p.strip() for p in str(default).split(",")]


def test_bench_policy_rejects_unknown_policy_and_bad_bound_settings() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "policy", "--policies", "similarity,bound-magic"])
    assert result.exit_code == 2 and "Unknown policy 'bound-magic'" in result.output
    assert "bound, bound-task" in result.output
    result = runner.invoke(app, ["bench", "policy", "--policies", "bound", "--bound-sigma", "-1"])
    assert result.exit_code == 2 and "sigma must be >= 0" in result.output
