"""Checks on everything that enters the store, with messages that say how to fix it."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from memory_agent.errors import InvalidInputError
from memory_agent.settings import Settings
from memory_agent.store.records import OUTCOMES, NewCase, StageStats

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_STAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
MAX_VISITS = 1_000_000_000
"""The most visits a case's statistics may claim at one stage: far beyond any real count,
well inside every backend's integer column."""


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


def check_stage(stage: Any) -> str:
    if not isinstance(stage, str) or not _STAGE.match(stage):
        raise InvalidInputError(
            f"stage name {stage!r} is not valid: use 1-32 letters, digits, _ or -, starting "
            "with a letter (e.g. plan, refine)."
        )
    return stage


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number, not {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{what} must be a finite number; got {value!r}.")
    return number


def check_stage_stats(stage: Any, stats: Any) -> StageStats:
    """Statistics of one stage as the policies accept them: visits a whole number in
    [0, MAX_VISITS], Q and the last reward in [-1, 1], a reward sum no larger in size than
    the visits could earn."""
    stage = check_stage(stage)
    where = f"stats for stage {stage!r}"
    if isinstance(stats, StageStats):
        raw: dict[str, Any] = {
            "visits": stats.visits, "q_value": stats.q_value,
            "reward_sum": stats.reward_sum, "last_reward": stats.last_reward,
        }  # fmt: skip
    elif isinstance(stats, dict):
        raw = stats
    else:
        raise InvalidInputError(
            f"{where} must be an object with visits and q_value, not {type(stats).__name__}."
        )
    unknown = set(raw) - {"visits", "q_value", "reward_sum", "last_reward"}
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.")
    missing = [key for key in ("visits", "q_value") if key not in raw]
    if missing:
        raise InvalidInputError(f"{where}: missing {', '.join(missing)}.")
    visits = _number(raw["visits"], f"{where}: visits")
    if visits != int(visits) or not 0 <= visits <= MAX_VISITS:
        raise InvalidInputError(
            f"{where}: visits must be a whole number from 0 to {MAX_VISITS:,}; "
            f"got {raw['visits']!r}."
        )
    q_value = _number(raw["q_value"], f"{where}: q_value")
    if not -1.0 <= q_value <= 1.0:
        raise InvalidInputError(f"{where}: q_value must be in [-1, 1]; got {raw['q_value']!r}.")
    reward_sum = _number(raw.get("reward_sum", 0.0), f"{where}: reward_sum")
    if abs(reward_sum) > max(visits, 1.0) * (1 + 1e-9):
        raise InvalidInputError(
            f"{where}: reward_sum {raw['reward_sum']!r} is more than {int(visits)} visit(s) "
            "with rewards in [-1, 1] can add up to."
        )
    last = raw.get("last_reward")
    last_reward = None if last is None else check_reward(last, f"{where}: last_reward")
    return StageStats(int(visits), q_value, reward_sum, last_reward)


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
    if not isinstance(case.stats, dict):
        raise InvalidInputError(
            f"stats must be an object of stage name to statistics, not {type(case.stats).__name__}."
        )
    stats = {check_stage(stage): check_stage_stats(stage, s) for stage, s in case.stats.items()}
    return NewCase(
        task=task,
        plan=plan,
        trajectory=case.trajectory,
        answer=answer,
        reward=reward,
        outcome=outcome,
        source=case.source,
        meta=dict(case.meta),
        stats=stats,
    )
