"""The episode graph driven by a scripted chat model over the real store (SQLite and
PostgreSQL) and the real MiniLM: nothing a model or tool does may crash a run or leave the
store inconsistent."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from scripted_model import ScriptedChatModel

from memory_agent import MemoryAgent, Settings
from memory_agent.errors import InvalidInputError
from memory_agent.store import CaseMemory
from memory_agent.store.run_log import RunNotFoundError
from memory_agent.tools import ToolContext, ToolResult, default_tools

CALC = 'PLAN: 1. multiply\nUSED CASES: none\nACTION: calculator {"expression": "6*7"}'


def make_agent(
    memory: CaseMemory,
    home: Path,
    llm: ScriptedChatModel,
    *,
    policy: str = "similarity",
    k: int | None = None,
    **runtime: Any,
) -> MemoryAgent:
    # similarity learns nothing itself, so the runtime's own credit bookkeeping is what the
    # statistics show; learned policies are tested in their own suite.
    policy_knobs: dict[str, Any] = {"name": policy} if k is None else {"name": policy, "k": k}
    settings = Settings(
        home=home,
        policy=policy_knobs,
        runtime={"task_timeout_s": 60, "tool_timeout_s": 5, **runtime},
    )
    return MemoryAgent(settings, llm=llm, memory=memory)


@pytest.fixture
def llm() -> ScriptedChatModel:
    return ScriptedChatModel()


@pytest.fixture
def agent(memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel) -> Iterator[MemoryAgent]:
    with make_agent(memory, isolated_home, llm) as built:
        yield built


def kinds(agent: MemoryAgent, run_id: str) -> list[str]:
    return [e.kind for e in agent.log.events(run_id)]


def test_tool_call_then_final_answer_is_scored_logged_and_stored(
    agent: MemoryAgent, llm: ScriptedChatModel, memory: CaseMemory
) -> None:
    llm.queue(CALC, "FINAL ANSWER: 42")
    result = agent.run("What is six times seven?", ground_truth="42")
    assert (result.answer, result.reward, result.error) == ("42", 1.0, None)
    assert result.plan == "1. multiply"
    assert [step["type"] for step in result.trajectory] == ["llm", "tool", "llm"]
    assert result.trajectory[1]["output"] == "42"
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    case = memory.get(result.case_id or -1)
    assert (case.task, case.answer, case.outcome, case.source) == (
        "What is six times seven?", "42", "success", "agent",
    )  # fmt: skip
    assert case.meta["run_id"] == result.run_id
    logged = kinds(agent, result.run_id)
    for kind in ("retrieval", "llm", "tool", "reward", "memory"):
        assert kind in logged
    row = agent.log.get(result.run_id)
    assert (row.status, row.answer, row.reward, row.case_id) == ("done", "42", 1.0, case.id)
    # The observation went back to the model as the next user turn.
    assert llm.calls[1][-1]["content"].startswith("OBSERVATION: 42")


def test_cited_case_gets_the_reward_and_later_feedback(
    agent: MemoryAgent, llm: ScriptedChatModel, memory: CaseMemory
) -> None:
    good = memory.add("What is six times seven?", plan="multiply with the calculator",
                      answer="42", reward=1.0, outcome="success")  # fmt: skip
    bad = memory.add("What is six plus seven?", plan="guess", answer="12", reward=0.0,
                     outcome="failure")  # fmt: skip
    llm.queue(f"PLAN: like case {good.id}\nUSED CASES: {good.id}, 999\nFINAL ANSWER: 56")
    result = agent.run("What is seven times eight?", ground_truth="56")
    assert set(result.cases_shown) == {good.id, bad.id}
    assert (result.cases_used, result.citation, result.reward) == ([good.id], "cited", 1.0)
    prompt = llm.calls[0][1]["content"]
    assert prompt.index("Past cases that worked") < prompt.index(f"[case {good.id}]")
    assert prompt.index("Past cases that failed") < prompt.index(f"[case {bad.id}]")
    assert memory.get(good.id).stats["plan"].q_value == 1.0
    assert "plan" not in memory.get(bad.id).stats  # shown but not used: no credit
    agent.feedback(result.run_id, 0.0)
    stats = memory.get(good.id).stats["plan"]
    assert (stats.visits, stats.q_value, stats.last_reward) == (2, 0.5, 0.0)
    assert memory.get(result.case_id or -1).outcome == "failure"
    assert agent.log.get(result.run_id).reward_source == "feedback"


def test_feedback_rejects_bad_input_and_changes_nothing(
    agent: MemoryAgent, llm: ScriptedChatModel, memory: CaseMemory
) -> None:
    llm.queue("FINAL ANSWER: 3")
    result = agent.run("What is one plus two?")
    assert result.reward is None and result.reward_source is None
    for bad in (float("nan"), 1.5, -0.1):
        with pytest.raises(InvalidInputError):
            agent.feedback(result.run_id, bad)
    with pytest.raises(RunNotFoundError):
        agent.feedback("no-such-run", 1.0)
    assert memory.get(result.case_id or -1).reward is None
    agent.feedback(result.run_id[:8], 1.0)  # a unique prefix is enough
    assert memory.get(result.case_id or -1).outcome == "success"


def test_later_feedback_rates_the_case_in_the_runs_own_namespace(
    agent: MemoryAgent, llm: ScriptedChatModel, memory: CaseMemory
) -> None:
    # The run's namespace is not the configured one: by-id updates are namespace-scoped, so
    # the re-rating must name the run's namespace or it would silently miss the case.
    llm.queue("FINAL ANSWER: 3")
    result = agent.run("What is one plus two?", namespace="team-b")
    assert result.case_id is not None
    agent.feedback(result.run_id, 1.0)
    case = memory.get(result.case_id, namespace="team-b")
    assert (case.reward, case.outcome) == (1.0, "success")


def test_malformed_replies_get_a_nudge_and_the_step_limit_ends_the_run(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    llm.queue("I am not sure what to do.", "Still thinking", "Hmm", "no idea")
    with make_agent(memory, isolated_home, llm, max_steps=3, max_attempts=1) as agent:
        result = agent.run("What is the capital of France?", ground_truth="Paris")
    assert result.answer is None and result.reward == 0.0
    assert result.error is not None and "step limit" in result.error
    assert len(llm.calls) == 3  # the limit held; the fourth reply was never requested
    assert "FINAL ANSWER" in llm.calls[1][-1]["content"]  # the nudge
    assert agent.log.get(result.run_id).status == "failed"
    assert [c.outcome for c in memory.list_cases()] == ["failure"]


def test_unknown_tool_and_malformed_arguments_become_observations(
    agent: MemoryAgent, llm: ScriptedChatModel
) -> None:
    llm.queue(
        'PLAN: search\nUSED CASES: none\nACTION: web_browser {"url": "x"}',
        "ACTION: calculator {expression: 6*7}",
        'ACTION: calculator {"expression": "6*7"}',
        "FINAL ANSWER: 42",
    )
    result = agent.run("What is six times seven?", ground_truth="42")
    assert (result.answer, result.reward, result.error) == ("42", 1.0, None)
    observations = [step["output"] for step in result.trajectory if step["type"] == "tool"]
    assert "unknown tool 'web_browser'" in observations[0] and "calculator" in observations[0]
    assert "not valid JSON" in observations[1]
    assert observations[2] == "42"


class ExplodingTool:
    name = "explode"
    description = "Always fails."
    parameters = {"x": "anything"}

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        raise RuntimeError("boom")


def test_tool_errors_and_tool_timeouts_do_not_crash_the_run(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    settings = Settings(
        home=isolated_home, runtime={"tool_timeout_s": 1}, policy={"name": "similarity"}
    )
    tools = default_tools(settings)
    tools.register(ExplodingTool())
    llm.queue(
        'PLAN: try\nUSED CASES: none\nACTION: explode {"x": 1}',
        "```python\nwhile True:\n    pass\n```",
        "FINAL ANSWER: 7",
    )
    with MemoryAgent(settings, llm=llm, memory=memory, tools=tools) as agent:
        started = time.perf_counter()
        result = agent.run("Pick a number.", ground_truth="7")
    assert time.perf_counter() - started < 30
    outputs = [s["output"] for s in result.trajectory if s["type"] == "tool"]
    assert "RuntimeError: boom" in outputs[0]
    assert "timed out" in outputs[1]
    assert (result.answer, result.reward, result.error) == ("7", 1.0, None)


def test_tool_budget_is_enforced(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    call = 'ACTION: calculator {"expression": "1+1"}'
    llm.queue(call, call, call, "FINAL ANSWER: 2")
    with make_agent(memory, isolated_home, llm, max_tool_calls=1) as agent:
        result = agent.run("What is one plus one?", ground_truth="2")
    outputs = [s["output"] for s in result.trajectory if s["type"] == "tool"]
    assert outputs[0] == "2"
    assert len(outputs) == 3, outputs
    assert all("tool budget" in o for o in outputs[1:]), outputs
    assert result.answer == "2"


def test_llm_failure_ends_the_run_without_learning(
    agent: MemoryAgent, llm: ScriptedChatModel, memory: CaseMemory
) -> None:
    case = memory.add("What is six times seven?", plan="multiply", answer="42",
                      outcome="success", reward=1.0)  # fmt: skip
    llm.queue(RuntimeError("connection reset"))
    result = agent.run("What is seven times eight?", ground_truth="56")
    assert result.error is not None and "connection reset" in result.error
    assert result.answer is None and result.reward is None and result.case_id is None
    assert memory.count() == 1 and memory.get(case.id).stats == {}
    assert agent.log.get(result.run_id).status == "failed"


def test_task_timeout_ends_the_run(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    llm.queue(CALC, "FINAL ANSWER: 42")
    with make_agent(memory, isolated_home, llm, task_timeout_s=0.001, max_attempts=1) as agent:
        result = agent.run("What is six times seven?")
    assert result.error is not None and "timed out" in result.error
    assert llm.calls == []


def test_frozen_memory_and_memory_off(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    case = memory.add("What is six times seven?", plan="multiply", answer="42",
                      outcome="success", reward=1.0)  # fmt: skip
    llm.queue(f"USED CASES: {case.id}\nFINAL ANSWER: 56", "FINAL ANSWER: 56")
    with make_agent(memory, isolated_home, llm) as agent:
        frozen = agent.run("What is seven times eight?", ground_truth="56", learn=False)
    assert frozen.cases_used == [case.id] and frozen.case_id is None
    assert memory.count() == 1 and memory.get(case.id).stats == {}
    with make_agent(memory, isolated_home, llm, policy="none") as agent:
        off = agent.run("What is seven times eight?", ground_truth="56")
    assert off.cases_shown == [] and off.citation == "none" and off.reward == 1.0
    assert "Past cases" not in llm.calls[-1][1]["content"]


def test_code_style_refines_a_failed_line_with_other_cases_and_infers_citation(
    memory: CaseMemory, isolated_home: Path
) -> None:
    first = memory.add("Spell the word 'planet' backward.", plan="'planet'[::-1]",
                       answer="tenalp", outcome="success", reward=1.0)  # fmt: skip
    second = memory.add("Spell the word 'rocket' backward.", plan="'rocket'[::-1]",
                        answer="tekcor", outcome="success", reward=1.0)  # fmt: skip
    llm = ScriptedChatModel(["'memory'.reverse()", "'memory'[::-1]"], prompt_style="code")
    with make_agent(memory, isolated_home, llm, k=1, max_attempts=2) as agent:
        result = agent.run("Spell the word 'memory' backward.", ground_truth="yromem")
    assert (result.answer, result.reward, result.attempts, result.stage) == (
        "yromem", 1.0, 2, "refine",
    )  # fmt: skip
    assert result.plan == "'memory'[::-1]"
    assert set(result.cases_shown) == {first.id, second.id}  # refine picked a different case
    assert result.citation == "inferred" and len(result.cases_used) == 1
    assert "AttributeError" in llm.calls[1][-1]["content"]  # the error went back to it
    # Both cases were shown as prior turns: task -> the line of Python.
    assert llm.calls[0][1]["role"] == "user" and llm.calls[0][2]["role"] == "assistant"
    credited = [memory.get(i).stats for i in (first.id, second.id)]
    assert {"plan", "refine"} & {s for stats in credited for s in stats}


def test_citation_margin_blames_only_the_case_whose_line_was_copied(
    memory: CaseMemory, isolated_home: Path
) -> None:
    right = memory.add("How many 0 bits are in the binary representation of 1910974046?",
                       plan="bin(1910974046)[2:].count('0')", answer="12", outcome="success",
                       reward=1.0)  # fmt: skip
    twin = memory.add("How many 1 bits are in the binary representation of 1669360679?",
                      plan="bin(1669360679).count('1')", answer="17", outcome="success",
                      reward=1.0)  # fmt: skip
    task = "How many 0 bits are in the binary representation of 1633494372?"
    for margin, blamed in ((None, {right.id, twin.id}), (0.1, {twin.id})):
        llm = ScriptedChatModel(["bin(1633494372).count('0')"], prompt_style="code")
        with make_agent(memory, isolated_home, llm, k=2, max_attempts=1,
                        citation_margin=margin) as agent:  # fmt: skip
            result = agent.run(task, ground_truth="17")
        assert set(result.cases_shown) == {right.id, twin.id}
        assert (result.reward, result.citation) == (0.0, "inferred")
        assert set(result.cases_used) == blamed


def test_an_interrupted_run_resumes_from_its_checkpoint(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    llm.queue(CALC, KeyboardInterrupt(), "FINAL ANSWER: 42")
    with make_agent(memory, isolated_home, llm) as agent:
        with pytest.raises(KeyboardInterrupt):
            agent.run("What is six times seven?", ground_truth="42", run_id="run-1")
        assert agent.log.get("run-1").status == "running"
    with make_agent(memory, isolated_home, llm) as agent:  # a new process would do the same
        result = agent.resume("run-1")
    assert (result.answer, result.reward, result.error) == ("42", 1.0, None)
    assert [s["type"] for s in result.trajectory] == ["llm", "tool", "llm"]
    assert memory.count() == 1


def test_bad_input_is_rejected_before_anything_runs(
    agent: MemoryAgent, llm: ScriptedChatModel, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        agent.run("   ")
    with pytest.raises(InvalidInputError, match="not found"):
        agent.run("Read it.", files=[tmp_path / "missing.csv"])
    assert llm.calls == [] and agent.log.recent() == []


def test_attachments_reach_the_tools(
    agent: MemoryAgent, llm: ScriptedChatModel, tmp_path: Path
) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("item,amount\napples,3\npears,4\n")
    llm.queue(
        'ACTION: read_file {"name": "sales.csv"}',
        "```python\nimport csv\nrows = list(csv.DictReader(open('files/sales.csv')))\n"
        "sum(int(r['amount']) for r in rows)\n```",
        "FINAL ANSWER: 7",
    )
    result = agent.run("What is the total amount?", files=[data], ground_truth="7")
    outputs = [s["output"] for s in result.trajectory if s["type"] == "tool"]
    assert outputs == ["item,amount\napples,3\npears,4", "7"]
    assert "sales.csv" in llm.calls[0][1]["content"]
    assert result.reward == 1.0


async def _arun(agent: MemoryAgent) -> float | None:
    result = await agent.arun("What is six times seven?", ground_truth="42")
    return result.reward


def test_arun(agent: MemoryAgent, llm: ScriptedChatModel) -> None:
    import asyncio

    llm.queue("FINAL ANSWER: 42")
    assert asyncio.run(_arun(agent)) == 1.0


def test_run_rejects_an_unknown_option(agent: MemoryAgent) -> None:
    # run and arun share their options through a TypedDict, which checks nothing at run time.
    with pytest.raises(TypeError, match="ground_thruth"):
        agent.run("What is six times seven?", ground_thruth="42")  # type: ignore[call-arg]


def test_a_judge_model_rates_answers_without_ground_truth(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    judge = ScriptedChatModel(["YES", "No, it is 56.", "maybe"])
    llm.queue("FINAL ANSWER: 42", "FINAL ANSWER: 54", "FINAL ANSWER: 12")
    settings = Settings(home=isolated_home, policy={"name": "similarity"})
    with MemoryAgent(settings, llm=llm, memory=memory, judge=judge) as agent:
        right = agent.run("What is six times seven?")
        wrong = agent.run("What is seven times eight?")
        unsure = agent.run("What is three times four?")
    assert (right.reward, right.reward_source) == (1.0, "judge")
    assert (wrong.reward, wrong.reward_source) == (0.0, "judge")
    assert (unsure.reward, unsure.reward_source) == (None, None)
    assert "Answer: 42" in judge.calls[0][1]["content"]
    assert memory.get(right.case_id or -1).outcome == "success"


def test_learned_policies_keep_their_own_case_statistics() -> None:
    from memory_agent.policies.similarity import SimilarityPolicy
    from memory_agent.policies.value import ValuePolicy
    from memory_agent.runtime.credit import policy_owns_stats

    class Learned(ValuePolicy):  # a learned policy says so by its class, not by its name
        def __init__(self) -> None:
            pass

    class Declared:
        name = "custom"
        owns_case_stats = True

    assert not policy_owns_stats(SimilarityPolicy())
    assert policy_owns_stats(Learned()) and policy_owns_stats(Declared())


def test_worked_examples_show_the_tool_calls_of_a_case_and_finished_runs_drop_checkpoints(
    agent: MemoryAgent, llm: ScriptedChatModel
) -> None:
    llm.queue(CALC, "FINAL ANSWER: 42", "USED CASES: 1\nFINAL ANSWER: 56")
    first = agent.run("What is six times seven?", ground_truth="42")
    second = agent.run("What is seven times eight?", ground_truth="56")
    assert 'ACTION: calculator {"expression": "6*7"}' in llm.calls[-1][1]["content"]
    assert second.cases_shown == [first.case_id]
    for run_id in (first.run_id, second.run_id):
        assert agent.episode.saved_state(run_id) is None


def test_a_refine_attempt_starts_clean_when_wrong_answers_may_be_retried(
    memory: CaseMemory, isolated_home: Path, llm: ScriptedChatModel
) -> None:
    first = memory.add("What is six times seven?", plan="multiply", answer="42",
                       outcome="success", reward=1.0)  # fmt: skip
    memory.add("What is six plus seven?", plan="add", answer="13", outcome="success", reward=1.0)
    llm.queue(
        f"PLAN: guess\nUSED CASES: {first.id}\nFINAL ANSWER: 54",
        "Thinking again, seven eights.\nFINAL ANSWER: 56",
    )
    with make_agent(memory, isolated_home, llm, k=1, refine_on_wrong_answer=True) as agent:
        result = agent.run("What is seven times eight?", ground_truth="56")
    assert (result.answer, result.reward, result.attempts, result.stage) == (
        "56", 1.0, 2, "refine",
    )  # fmt: skip
    assert result.citation == "inferred" and result.cases_used == []  # not attempt 1's citation
    assert "the answer '54' was wrong" in llm.calls[1][1]["content"]
    assert memory.get(first.id).stats["plan"].q_value == 0.0  # attempt 1's case got its 0


def test_code_style_policy_chooses_among_successes_only(
    memory: CaseMemory, isolated_home: Path
) -> None:
    # The failure is the most similar case and unvisited (a learned policy's optimistic
    # prior would rank it first), but the code style can only show successes.
    failed = memory.add("Spell the word 'memory' backward.", plan="sorted('memory')",
                        answer="emmory", outcome="failure", reward=0.0)  # fmt: skip
    success = memory.add("Spell the word 'rocket' backward.", plan="'rocket'[::-1]",
                         answer="tekcor", outcome="success", reward=1.0)  # fmt: skip
    llm = ScriptedChatModel(["'memory'[::-1]"], prompt_style="code")
    with make_agent(memory, isolated_home, llm, k=1, policy="value") as agent:
        result = agent.run("Spell the word 'memory' backward.", ground_truth="yromem")
    assert result.cases_shown == [success.id] and failed.id not in result.cases_shown
    assert llm.calls[0][-2] == {"role": "assistant", "content": "'rocket'[::-1]"}
