"""`memory-agent memory gaps`: kinds of task that keep failing whatever the memory shows
(real SQLite store and run log, real MiniLM)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.gaps import Outcome, find_gaps
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory
from memory_agent.store.run_log import NewRun

WORDS = ["orchid", "lantern", "meadow", "quartz", "harbour", "violin", "candle", "forest"]
REVERSE = "Spell the word '{}' backward, last letter first."
SUMS = [f"What is {a} plus {b}?" for a, b in [(3, 4), (12, 9), (40, 2), (7, 7), (15, 26)]]


def _outcomes(reverse_rewards: list[float]) -> list[Outcome]:
    """Reversal tasks with the given rewards (case 1 shown), then sums that all succeed
    (case 2 shown)."""
    out = [
        Outcome(f"r{i}", REVERSE.format(w), reward, (1,))
        for i, (w, reward) in enumerate(zip(WORDS, reverse_rewards, strict=False))
    ]
    out += [Outcome(f"s{i}", task, 1.0, (2,)) for i, task in enumerate(SUMS)]
    return out


def _gaps(minilm: Any, outcomes: list[Outcome], **options: Any) -> list[Any]:
    vectors = minilm.embed([o.task for o in outcomes])
    # Short tasks that differ in one word sit at cosine 0.43-0.73 under MiniLM (the sums
    # at 0.50-0.66, a sum and a reversal at most 0.22).
    settings = {"similar": 0.4, "min_runs": 5, "max_rate": 0.25, **options}
    return find_gaps(outcomes, vectors, **settings)


def test_a_kind_of_task_that_keeps_failing_is_a_gap(minilm: Any) -> None:
    outcomes = _outcomes([0.0] * 7 + [1.0])  # one success in eight reversals
    (gap,) = _gaps(minilm, outcomes)
    assert sorted(gap.runs) == sorted(f"r{i}" for i in range(8))  # every reversal, no sum
    assert gap.successes == 1 and gap.rate == 1 / 8
    assert [(c.case_id, c.shown, c.succeeded) for c in gap.cases] == [(1, 8, 1)]
    assert gap.nothing_shown == 0


def test_no_gap_where_tasks_succeed_or_are_too_few(minilm: Any) -> None:
    assert _gaps(minilm, _outcomes([1.0, 0.0] * 4)) == []  # half succeed: above 25%
    assert _gaps(minilm, _outcomes([0.0] * 8), min_runs=9) == []  # eight are too few
    assert _gaps(minilm, _outcomes([0.0] * 8), similar=0.99) == []  # no two tasks alike
    assert find_gaps([], np.zeros((0, 384)), similar=0.75, min_runs=5, max_rate=0.25) == []


def _log_runs(settings: Settings, minilm: Any) -> tuple[int, int]:
    """A store whose reversal runs all failed with its one reversal case shown, and whose
    sum runs succeeded; returns the two cases' ids."""
    with CaseMemory(settings, embedder=minilm) as memory:
        reverse = memory.add(REVERSE.format("planet"), plan="'planet'[::-1]",
                             answer="tenalp", reward=1.0, outcome="success")  # fmt: skip
        add = memory.add("What is 2 plus 2?", plan="2 + 2", answer="4", reward=1.0,
                         outcome="success")  # fmt: skip
        runs = [(REVERSE.format(w), 0.0, reverse.id) for w in WORDS]
        runs += [(task, 1.0, add.id) for task in SUMS]
        memory.run_log().record([
            NewRun(str(uuid.uuid4()), {
                "namespace": "default", "task": task, "status": "done", "model": "scripted",
                "policy": "track", "prompt_style": "code", "learn": True, "reward": reward,
                "cases_shown": [case_id],
            })
            for task, reward, case_id in runs
        ])  # fmt: skip
    return reverse.id, add.id


def test_cli_lists_the_gap_with_the_cases_shown_there(minilm: Any, isolated_home: Path) -> None:
    reverse_id, _ = _log_runs(Settings(home=isolated_home), minilm)
    runner = CliRunner()
    result = runner.invoke(app, ["memory", "gaps", "--similar", "0.4", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["runs_read"] == len(WORDS) + len(SUMS) and out["settings"]["similar"] == 0.4
    (gap,) = out["gaps"]
    assert gap["runs"] == len(WORDS) and gap["successes"] == 0
    assert gap["cases"] == [{"case_id": reverse_id, "shown": len(WORDS), "succeeded": 0}]
    assert gap["case_tasks"] == {str(reverse_id): REVERSE.format("planet")}
    text = runner.invoke(app, ["memory", "gaps", "--similar", "0.4"])
    assert text.exit_code == 0, text.output
    assert "0 of 8 runs succeeded" in text.output
    assert f"case {reverse_id}: shown in 8, 0 succeeded" in text.output
    assert "store a worked example" in text.output


def test_cli_says_when_there_is_nothing_to_judge(isolated_home: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["memory", "gaps"])
    assert empty.exit_code == 0, empty.output
    assert "No rewarded runs" in empty.output
    bad = runner.invoke(app, ["memory", "gaps", "--similar", "2"])
    assert bad.exit_code == 2 and "--similar" in bad.output
