"""pass@k over attempt records, per level, and the markdown report and submission file.

pass@j uses the unbiased estimator 1 - C(n-c, j) / C(n, j) for a task with n attempts of
which c are correct: with j = n it is "any attempt correct", with j = 1 the mean success.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k attempts drawn from n (c correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass(frozen=True)
class Score:
    """Figures for one group of tasks (a level, or all)."""

    tasks: int  # tasks with at least one record
    scored: int  # tasks with a ground truth and all k attempts
    pass_1: float | None
    pass_k: float | None
    correct_attempts: int
    attempts: int
    errors: int  # attempts that ended with an error
    malformed: int  # metadata rows that never ran
    incomplete: int  # tasks with fewer than k attempts recorded
    mean_elapsed_s: float | None
    prompt_tokens: int
    completion_tokens: int


def by_task(records: list[dict[str, Any]], k: int) -> dict[str, list[dict[str, Any]]]:
    """Each task's attempts 0..k-1, first record wins when a resume wrote one twice."""
    grouped: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for record in records:
        attempt = int(record["attempt"])
        if attempt < k:
            grouped[str(record["task_id"])].setdefault(attempt, record)
    return {task: [a[i] for i in sorted(a)] for task, a in grouped.items()}


def summarize(records: list[dict[str, Any]], k: int) -> dict[str, Score]:
    """Scores for "all" and for each level present ("1", "2", "3")."""
    tasks = by_task(records, k)
    groups: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for attempts in tasks.values():
        groups["all"].append(attempts)
        level = attempts[0].get("level")
        if level is not None:
            groups[str(level)].append(attempts)
    return {name: _score(groups[name], k) for name in sorted(groups, key=_group_order)}


def _group_order(name: str) -> tuple[int, str]:
    return (0, "") if name == "all" else (1, name)


def _score(tasks: list[list[dict[str, Any]]], k: int) -> Score:
    pass_1: list[float] = []
    pass_k: list[float] = []
    attempts = [a for t in tasks for a in t if not a.get("malformed")]
    malformed = sum(1 for t in tasks if t[0].get("malformed"))
    incomplete = 0
    for task in tasks:
        if task[0].get("malformed"):
            continue
        if len(task) < k:
            incomplete += 1
            continue
        if task[0].get("truth") is None:
            continue
        correct = sum(1 for a in task if a.get("score") is True)
        pass_1.append(pass_at_k(len(task), correct, 1))
        pass_k.append(pass_at_k(len(task), correct, k))
    elapsed = [float(a["elapsed_s"]) for a in attempts if a.get("elapsed_s") is not None]
    return Score(
        tasks=len(tasks),
        scored=len(pass_1),
        pass_1=sum(pass_1) / len(pass_1) if pass_1 else None,
        pass_k=sum(pass_k) / len(pass_k) if pass_k else None,
        correct_attempts=sum(1 for a in attempts if a.get("score") is True),
        attempts=len(attempts),
        errors=sum(1 for a in attempts if a.get("error")),
        malformed=malformed,
        incomplete=incomplete,
        mean_elapsed_s=sum(elapsed) / len(elapsed) if elapsed else None,
        prompt_tokens=sum(int(a.get("prompt_tokens") or 0) for a in attempts),
        completion_tokens=sum(int(a.get("completion_tokens") or 0) for a in attempts),
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def markdown_report(title: str, info: dict[str, Any], scores: dict[str, Score], k: int) -> str:
    """A markdown page: how the run was made, then one row per level."""
    lines = [f"# {title}", ""]
    for key in ("mode", "policy", "model", "pass_k", "metadata_file", "created"):
        if info.get(key) is not None:
            lines.append(f"- {key}: `{info[key]}`")
    lines += [
        "",
        f"| level | tasks | scored | pass@1 | pass@{k if k > 1 else 'k'} | errors | malformed "
        "| incomplete "
        "| mean s/attempt | tokens (prompt/completion) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, s in scores.items():
        mean = "—" if s.mean_elapsed_s is None else f"{s.mean_elapsed_s:.1f}"
        lines.append(
            f"| {name} | {s.tasks} | {s.scored} | {_percent(s.pass_1)} | {_percent(s.pass_k)} "
            f"| {s.errors} | {s.malformed} | {s.incomplete} | {mean} "
            f"| {s.prompt_tokens}/{s.completion_tokens} |"
        )
    lines += [
        "",
        "pass@1 is the mean success of an attempt; pass@k counts a task when any of its k "
        "attempts is correct. Tasks without a ground truth (hidden answers) are not scored.",
        "",
    ]
    return "\n".join(lines)


def write_submission(path: Path, records: list[dict[str, Any]]) -> int:
    """GAIA's submission JSONL: attempt 0 of every task that ran. Returns the row count."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for task_id, attempts in by_task(records, k=1).items():
            first = attempts[0]
            if first.get("malformed"):
                continue
            row = {
                "task_id": task_id,
                "model_answer": first.get("prediction") or "",
                "reasoning_trace": first.get("reasoning_trace") or "",
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
