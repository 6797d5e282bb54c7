"""The stream's judge through the real agent: no ground truth reaches the run, the reward
comes as feedback on the agent's own run, and a lenient judge's mistake is stored as a
success. Real SQLite store and policy; a scripted chat model and the hash embedder."""

from __future__ import annotations

from pathlib import Path

from hash_embedder import HashEmbedder
from scripted_model import ScriptedChatModel

from memory_agent.evals.agent_solver import AgentSolver
from memory_agent.evals.gaia import GaiaTask
from memory_agent.evals.stream import judge
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


def task(task_id: str, question: str, truth: str, mark: str = "strict") -> GaiaTask:
    meta = {"judge": mark, "solution": f"print({truth})"}
    return GaiaTask(task_id, question, 1, truth, annotator_metadata=meta)


def reply(answer: str) -> str:
    return f"PLAN: 1. count\nUSED CASES: none\nFINAL ANSWER: {answer}"


def test_judge_feedback_reaches_the_agent_and_a_lenient_mistake_is_stored_as_success(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'm.db'}")
    llm = ScriptedChatModel([reply("7"), reply("7"), reply("9"), reply("4")])
    embedder = HashEmbedder()
    solver = AgentSolver(settings, policy="value", llm=llm, embedder=embedder, judge=judge)
    lenient = task("t1", "How many 1 bits are there in the number 37?", "3", "lenient")
    strict = task("t2", "How many 1 bits are there in the number 38?", "3")
    held = task("h1", "How many 1 bits are there in the number 44?", "3")
    correction = task("c1", "How many 1 bits are there in the hex number 2a?", "3")
    try:
        first = solver.solve(lenient, 0, learn=True)
        second = solver.solve(strict, 0, learn=True)
        assert (first.prediction, first.feedback) == ("7", 1.0)  # wrong, but accepted
        assert (second.prediction, second.feedback) == ("7", 0.0)
        # worked examples arriving mid-stream go through the running agent's memory
        assert solver.remember([correction]) == 1
        assert solver.remember([correction]) == 0  # a resumed run may repeat it
        third = solver.solve(held, 0, learn=False)
        assert third.feedback is None
        assert "hex number 2a" in "\n".join(m["content"] for m in llm.calls[-1])
        agent = solver.agent()
        for attempt in (first, second, third):
            assert attempt.run_id is not None
            assert agent.log.get(attempt.run_id).ground_truth is None  # no label reached it
        assert agent.log.get(first.run_id or "").reward_source == "feedback"
    finally:
        solver.close()
    memory = CaseMemory(settings, embedder=embedder)
    try:
        cases = {c.task: c for c in memory.list_cases(limit=50)}
    finally:
        memory.close()
    assert (cases[lenient.question].outcome, cases[lenient.question].reward) == ("success", 1.0)
    assert (cases[strict.question].outcome, cases[strict.question].reward) == ("failure", 0.0)
    assert held.question not in cases  # held-out runs are frozen
    assert cases[correction.question].source == "worked-example"
