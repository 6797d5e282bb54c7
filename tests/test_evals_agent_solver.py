"""AgentSolver's memory side: worked examples become successful cases in the real store."""

from __future__ import annotations

from pathlib import Path

from memory_agent.evals.agent_solver import AgentSolver, reasoning_trace
from memory_agent.evals.stream import make_stream
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


def test_worked_examples_are_stored_as_successful_cases(
    database_url: str, minilm: object, isolated_home: Path
) -> None:
    settings = Settings(home=isolated_home, database_url=database_url)
    worked = make_stream(["count_bits", "spell_backward"], 4, 2, seed=1, worked_examples=2).worked
    solver = AgentSolver(settings, policy="similarity", namespace="stream")
    assert solver.remember(worked) == 4
    memory = CaseMemory(settings, embedder=minilm)  # type: ignore[arg-type]
    try:
        cases = memory.list_cases(namespace="stream")
        assert sorted(c.task for c in cases) == sorted(t.question for t in worked)
        for case in cases:
            source = next(t for t in worked if t.question == case.task)
            assert case.plan == source.annotator_metadata["solution"]
            assert case.answer == source.final_answer
            assert case.outcome == "success" and case.reward == 1.0
        # the stored plan is what a planner is shown: it must find the task by meaning
        hits = memory.search("How many 1 bits are in the binary form of 12345?", k=1,
                             namespace="stream")  # fmt: skip
        assert hits[0].case.plan is not None and hits[0].case.plan.startswith("bin(")
    finally:
        memory.close()


def test_reasoning_trace_reads_plan_then_steps() -> None:
    trace = reasoning_trace("bin(5).count('1')", [{"type": "tool", "output": "2"}])
    assert trace.splitlines() == ["PLAN: bin(5).count('1')", '{"type": "tool", "output": "2"}']
    assert reasoning_trace(None, []) == ""
