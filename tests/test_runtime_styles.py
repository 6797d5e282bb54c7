"""The prompt styles and the outcome steps on their own, without a graph, store or model."""

from __future__ import annotations

from typing import Any

import numpy as np

from memory_agent.errors import CaseNotFoundError
from memory_agent.runtime import prompts
from memory_agent.runtime.outcome import apply_late_reward, credit_record, outcome_for
from memory_agent.runtime.state import EpisodeState, Pending, initial_state
from memory_agent.runtime.styles import CodeStyle, ReactStyle, style_for
from memory_agent.tools.base import ToolResult


def state(**changes: Any) -> EpisodeState:
    s = initial_state(run_id="r", task="What is 6*7?", namespace="default", files=[],
                      ground_truth=None, learn=True, timeout_s=60)  # fmt: skip
    return {**s, **changes}  # type: ignore[typeddict-item]


PYTHON: Pending = {"kind": "tool", "tool": "python", "args": {"code": "6*7"}, "problem": None}


def test_the_style_is_chosen_by_name_and_carries_its_settings() -> None:
    assert isinstance(style_for("code"), CodeStyle) and isinstance(style_for("react"), ReactStyle)
    assert CodeStyle.case_filter == {"outcome": "success"} and ReactStyle.case_filter is None
    assert ReactStyle.stop == (prompts.OBSERVATION_MARKER,) and CodeStyle.stop == ()


def test_code_style_runs_python_and_takes_its_output_as_the_answer() -> None:
    code = CodeStyle()
    assert code.parse(state(), "6*7", True) == {"plan": "6*7", "pending": PYTHON}
    assert code.parse(state(), "FINAL ANSWER: 42", True)["answer"] == "42"
    assert code.parse(state(), "It is forty-two.\nReally.", True)["answer"] == "It is forty-two."
    ok = code.observe(state(), PYTHON, ToolResult(True, "\n42\n"), spent=False)
    assert ok.update == {"answer": "42", "pending": None} and not ok.ask_model
    failed = code.observe(state(), PYTHON, ToolResult(False, "NameError"), spent=False)
    assert failed.update["retry_note"] == {"previous": "6*7", "observation": "NameError"}
    retry = state(retry_note={"previous": "6*", "observation": "SyntaxError"})
    assert "SyntaxError" in code.prompt(retry, [], None)[-1]["content"]  # type: ignore[arg-type]


def test_react_style_keeps_the_conversation_going_after_a_tool() -> None:
    react = ReactStyle()
    reply = 'PLAN: multiply\nUSED CASES: 3, 9\nACTION: calculator {"expression": "6*7"}'
    parsed = react.parse(state(shown=[3]), reply, True)
    assert (parsed["plan"], parsed["cited"]) == ("multiply", [3])
    assert parsed["pending"] == {"kind": "tool", "tool": "calculator",
                                 "args": {"expression": "6*7"}, "problem": None}  # fmt: skip
    assert react.parse(state(), "thinking", True)["pending"] == {
        "kind": "none",
        "tool": None,
        "args": {},
        "problem": None,
    }
    observed = react.observe(state(), PYTHON, ToolResult(True, "42"), spent=True)
    assert observed.ask_model
    contents = [m["content"] for m in observed.update["messages"]]
    assert contents == [f"{prompts.OBSERVATION_MARKER} 42", prompts.TOOL_BUDGET_SPENT]


def test_outcome_labels() -> None:
    assert [outcome_for(r, "a") for r in (None, 0.0, 0.5, 1.0)] == [
        None,
        "failure",
        "partial",
        "success",
    ]
    assert outcome_for(None, None) == "failure"


class _Embedder:
    def embed(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        return np.ones((len(texts), 4), dtype=np.float32)


class _Memory:
    embedder = _Embedder()

    def update(self, case_id: int, *, namespace: str | None = None, **fields: Any) -> None:
        raise CaseNotFoundError(f"case {case_id} is gone")


class _Policy:
    name = "custom"
    owns_case_stats = True  # so no statistics rows are written (there is no store here)

    def __init__(self) -> None:
        self.updates: list[Any] = []

    def update(self, feedback: Any) -> None:
        self.updates.append(feedback)


def test_a_late_reward_reaches_the_policy_even_when_the_case_is_gone() -> None:
    policy = _Policy()
    record = credit_record("refine", [3, 9], [3], 1.0, "inferred")
    apply_late_reward(_Memory(), policy, namespace="default", task="t", case_id=7,  # type: ignore[arg-type]
                      answer="42", record=record)  # fmt: skip
    [feedback] = policy.updates
    assert (feedback.stage, feedback.shown, feedback.used, feedback.citation) == (
        "refine",
        [3, 9],
        [3],
        "inferred",
    )
