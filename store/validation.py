"""Checks on everything that enters the store, with messages that say how to fix it."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from memory_agent.errors import InvalidInputError
from memory_agent.settings import Settings
from memory_agent.store.records import OUTCOMES, NewCase

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise InvalidInputError(
            f"Namespace {namespace!r} is not valid: use 1-128 letters, digits or . _ : @ -, "
            "starting with a letter or digit."
        )
    return namespace


def check_text(value: Any, what: str, limit: int, *, required: bool, setting: str) -> str | None:
    """A clean string (or None if allowed), or a clear error."""
    if value is None:
        if required:
            raise InvalidInputError(f"{what} is missing; give a non-empty string.")
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}.")
    if required and not value.strip():
        raise InvalidInputError(f"{what} is empty or only whitespace; give the text of the task.")
    if len(value) > limit:
        raise InvalidInputError(
            f"{what} is {len(value):,} characters; the limit is {limit:,}. Shorten it, keep long "
            f"material in the trajectory or an attachment, or raise {setting}."
        )
    if "\x00" in value:
        raise InvalidInputError(f"{what} contains a NUL character (\\x00); remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode ({exc.reason} at position {exc.start}); decode the "
            "source as UTF-8 before storing it."
        ) from exc
    return value


def check_reward(value: Any, what: str = "reward") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number in [-1, 1], not {value!r}.")
    reward = float(value)
    if not math.isfinite(reward) or not -1.0 <= reward <= 1.0:
        raise InvalidInputError(f"{what} must be a finite number in [-1, 1]; got {value!r}.")
    return reward


def derive_outcome(reward: float | None) -> str | None:
    if reward is None:
        return None
    return "success" if reward >= 0.5 else "failure"


def check_new_case(case: NewCase, settings: Settings) -> NewCase:
    """A validated copy of `case`; raises InvalidInputError naming the bad field."""
    task = check_text(
        case.task,
        "task",
        settings.store.max_task_chars,
        required=True,
        setting="MEMORY_AGENT_MAX_TASK_CHARS",
    )
    assert task is not None
    plan = check_text(
        case.plan,
        "plan",
        settings.store.max_text_chars,
        required=False,
        setting="MEMORY_AGENT_MAX_TEXT_CHARS",
    )
    answer = check_text(
        case.answer,
        "answer",
        settings.store.max_text_chars,
        required=False,
        setting="MEMORY_AGENT_MAX_TEXT_CHARS",
    )
    reward = check_reward(case.reward)
    outcome = case.outcome if case.outcome is not None else derive_outcome(reward)
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidInputError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}.")
    if not isinstance(case.source, str) or not 0 < len(case.source) <= 64:
        raise InvalidInputError("source must be a string of 1-64 characters.")
    if not isinstance(case.meta, dict) or not all(isinstance(k, str) for k in case.meta):
        raise InvalidInputError("meta must be a dict with string keys.")
    try:
        trajectory_bytes = len(json.dumps(case.trajectory, allow_nan=False).encode("utf-8"))
        json.dumps(case.meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"trajectory and meta must be JSON-serialisable (no NaN, no objects): {exc}"
        ) from exc
    if trajectory_bytes > settings.store.max_trajectory_bytes:
        raise InvalidInputError(
            f"trajectory is {trajectory_bytes:,} bytes as JSON; the limit is "
            f"{settings.store.max_trajectory_bytes:,}. Trim tool outputs or raise "
            "MEMORY_AGENT_MAX_TRAJECTORY_BYTES."
        )
    return NewCase(
        task=task,
        plan=plan,
        trajectory=case.trajectory,
        answer=answer,
        reward=reward,
        outcome=outcome,
        source=case.source,
        meta=dict(case.meta),
        stats=dict(case.stats),
    )
