"""The typed state that flows through the episode graph (checkpointed, so JSON-like only)."""

from __future__ import annotations

from typing import Any, TypedDict

from memory_agent.llm.base import Message


class EpisodeState(TypedDict, total=False):
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
    retry_note: dict[str, str] | None  # {"previous", "observation"} for a refine attempt

    messages: list[Message]
    plan: str | None
    steps: int  # LLM calls so far
    tool_calls: int
    trajectory: list[dict[str, Any]]
    pending: dict[str, Any] | None  # the action parsed from the last reply
    answer: str | None
    output_for_citation: str
    cited: list[int] | None  # None: the model did not cite

    reward: float | None
    reward_source: str | None
    cases_used: list[int]
    citation: str
    feedback: list[dict[str, Any]]  # one per attempt, applied by the policy update node
    all_shown: list[int]

    error: str | None
    error_kind: str | None  # "llm" (backend failed: learn nothing) or "limit"
    prompt_tokens: int
    completion_tokens: int
    case_id: int | None
