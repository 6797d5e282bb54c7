"""The typed state that flows through the episode graph (checkpointed, so JSON-like only).

`initial_state` sets every key, so a node reads `s["key"]` and the defaults live here only.
Nodes return `EpisodeUpdate`, the same keys all optional: only the fields they change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from memory_agent.llm.base import Message


class Pending(TypedDict):
    """The action parsed from the last reply: a tool call, or `kind="none"` (no action)."""

    kind: str  # "tool" or "none"
    tool: str | None
    args: dict[str, Any]
    problem: str | None  # why a tool call could not be read


class RetryNote(TypedDict):
    """What a refine attempt is told about the failed one."""

    previous: str
    observation: str


class CreditRecord(TypedDict):
    """One attempt's credit, applied to the policy when the episode ends."""

    stage: str
    shown: list[int]
    used: list[int]
    reward: float
    citation: str


class EpisodeUpdate(TypedDict, total=False):
    run_id: str
    task: str
    namespace: str
    files: list[str]  # absolute paths of the attachments
    ground_truth: str | None
    learn: bool
    deadline: float  # time.time() by which the task must end

    state_vector: list[float] | None
    candidates: list[dict[str, Any]]  # {"case_id", "similarity"}
    stage: str  # "plan" or "refine"
    attempt: int
    excluded: list[int]  # shown in earlier attempts; refine picks different cases
    shown: list[int]
    explored: list[bool]
    shown_cases: list[dict[str, Any]]  # ShownCase fields
    retry_note: RetryNote | None  # for a refine attempt

    messages: list[Message]
    plan: str | None
    steps: int  # LLM calls so far
    tool_calls: int
    trajectory: list[dict[str, Any]]
    pending: Pending | None  # None: the attempt has ended
    answer: str | None
    output_for_citation: str
    cited: list[int] | None  # None: the model did not cite

    reward: float | None
    reward_source: str | None
    cases_used: list[int]
    citation: str  # "cited", "inferred" or "none"
    feedback: list[CreditRecord]  # one per credited attempt
    all_shown: list[int]

    error: str | None
    error_kind: str | None  # "llm" (backend failed: learn nothing) or "limit"
    prompt_tokens: int
    completion_tokens: int
    case_id: int | None


class EpisodeState(TypedDict):
    """Every key of `EpisodeUpdate`, always present (see `EpisodeUpdate` for their meaning)."""

    run_id: str
    task: str
    namespace: str
    files: list[str]
    ground_truth: str | None
    learn: bool
    deadline: float
    state_vector: list[float] | None
    candidates: list[dict[str, Any]]
    stage: str
    attempt: int
    excluded: list[int]
    shown: list[int]
    explored: list[bool]
    shown_cases: list[dict[str, Any]]
    retry_note: RetryNote | None
    messages: list[Message]
    plan: str | None
    steps: int
    tool_calls: int
    trajectory: list[dict[str, Any]]
    pending: Pending | None
    answer: str | None
    output_for_citation: str
    cited: list[int] | None
    reward: float | None
    reward_source: str | None
    cases_used: list[int]
    citation: str
    feedback: list[CreditRecord]
    all_shown: list[int]
    error: str | None
    error_kind: str | None
    prompt_tokens: int
    completion_tokens: int
    case_id: int | None


def _defaults() -> EpisodeState:
    # A function, not a constant: the lists must be fresh for every episode.
    return {
        "run_id": "", "task": "", "namespace": "", "files": [], "ground_truth": None,
        "learn": True, "deadline": 0.0,
        "state_vector": None, "candidates": [], "stage": "plan", "attempt": 1, "excluded": [],
        "shown": [], "explored": [], "shown_cases": [], "retry_note": None,
        "messages": [], "plan": None, "steps": 0, "tool_calls": 0, "trajectory": [],
        "pending": None, "answer": None, "output_for_citation": "", "cited": None,
        "reward": None, "reward_source": None, "cases_used": [], "citation": "none",
        "feedback": [], "all_shown": [],
        "error": None, "error_kind": None, "prompt_tokens": 0, "completion_tokens": 0,
        "case_id": None,
    }  # fmt: skip


def initial_state(
    *,
    run_id: str,
    task: str,
    namespace: str,
    files: Sequence[Path],
    ground_truth: str | None,
    learn: bool,
    timeout_s: float,
) -> EpisodeState:
    return {
        **_defaults(),
        "run_id": run_id,
        "task": task,
        "namespace": namespace,
        "files": [str(f) for f in files],
        "ground_truth": ground_truth,
        "learn": learn,
        "deadline": time.time() + timeout_s,
    }


def completed(values: Mapping[str, Any]) -> EpisodeState:
    """A partial state (a crash before the first checkpoint) with the missing keys at default."""
    return cast(EpisodeState, {**_defaults(), **values})


def no_action() -> Pending:
    return {"kind": "none", "tool": None, "args": {}, "problem": None}
