"""Prompts for the two planner styles, and parsing of what the model writes back.

`code` is for small models (the embedded 135M cannot follow a JSON or multi-marker protocol):
each successful case becomes a prior chat turn, task -> the Python that answered it, and the
model's reply is run as Python. In a trial this took SmolLM2-135M from 0/8 to 8/8 on
count_bits. `react` is for capable models: cases as worked examples (successes and failures
apart), a plan that cites the case ids it used, then tool calls and a FINAL ANSWER.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from memory_agent.llm.base import Message

FINAL_MARKER = "FINAL ANSWER:"
OBSERVATION_MARKER = "OBSERVATION:"
_FINAL = re.compile(r"FINAL ANSWER:\s*(.*)", re.IGNORECASE | re.DOTALL)
_PLAN = re.compile(
    r"PLAN:\s*(.*?)(?=^\s*(?:USED CASES:|ACTION:|FINAL ANSWER:|```)|\Z)",
    re.IGNORECASE | re.DOTALL | re.MULTILINE,
)
_USED = re.compile(r"USED CASES:\s*([^\n]*)", re.IGNORECASE)
_ACTION = re.compile(r"ACTION:\s*([A-Za-z_][\w.-]*)\s*(.*)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```(?:python|py)?\s*\n?(.*?)```", re.DOTALL)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_COMPUTES = (ast.Call, ast.Subscript, ast.BinOp, ast.Lambda, ast.ListComp, ast.GeneratorExp)


@dataclass(frozen=True, slots=True)
class ShownCase:
    """A case as the planner sees it."""

    id: int
    task: str
    plan: str | None
    answer: str | None
    outcome: str | None
    actions: tuple[str, ...] = ()  # the tool calls it made, as ACTION lines

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"


CODE_SYSTEM = (
    "You answer each question with one line of Python that computes the answer. "
    "Reply with the code only."
)

REACT_SYSTEM = """You are an agent that solves tasks step by step with tools.

Tools:
{tools}

Reply in plain text with these markers:
PLAN: a few numbered steps.
USED CASES: the ids of the past cases you relied on ("USED CASES: 12, 40" or "USED CASES: none").
Then either call one tool with a single line
ACTION: tool_name {{"argument": "value"}}
or, when you know the answer,
FINAL ANSWER: the answer only (a number, a few words, or a comma-separated list).
After each ACTION you get an OBSERVATION; then write the next ACTION or the FINAL ANSWER.
Write one ACTION per reply and never write an OBSERVATION yourself."""


NUDGE = 'Reply with one line `ACTION: tool {"arg": ...}` or `FINAL ANSWER: ...`.'
TOOL_BUDGET_SPENT = "The tool budget is used up. Reply now with FINAL ANSWER: ..."

JUDGE_SYSTEM = (
    "You check answers. Reply YES if the answer correctly and completely answers the task, "
    "otherwise NO. Reply with the one word."
)


def clip(text: str, limit: int = 4_000) -> str:
    """`text` cut to `limit` characters, for prompts, logs and trajectories."""
    return text if len(text) <= limit else text[:limit] + "…"


def parse_verdict(text: str) -> float | None:
    """1.0 for a YES, 0.0 for a NO, None when the judge said neither."""
    words = re.findall(r"[a-z]+", text.lower())
    if not words:
        return None
    if words[0] in ("yes", "correct"):
        return 1.0
    if words[0] in ("no", "incorrect", "wrong"):
        return 0.0
    return None


def _files_line(files: Sequence[str]) -> str:
    if not files:
        return ""
    names = ", ".join(files)
    return f"\nAttached files (also in ./files of the Python workspace): {names}"


def code_messages(task: str, cases: Sequence[ShownCase], files: Sequence[str]) -> list[Message]:
    """The `code` style conversation: each usable case is a prior turn."""
    messages: list[Message] = [{"role": "system", "content": CODE_SYSTEM}]
    # Best case last: a small model copies the turn nearest the question most faithfully.
    for case in reversed(cases):
        if case.succeeded and case.plan:
            messages.append({"role": "user", "content": case.task})
            messages.append({"role": "assistant", "content": case.plan.strip()})
    messages.append({"role": "user", "content": task + _files_line(files)})
    return messages


def code_retry(previous: str, observation: str) -> list[Message]:
    """Turns that ask the small model to fix a line that failed."""
    return [
        {"role": "assistant", "content": previous},
        {
            "role": "user",
            "content": f"That failed: {observation[:400]}\nReply with one corrected line of "
            "Python only.",
        },
    ]


def actions_of(trajectory: Any, limit: int = 5) -> tuple[str, ...]:
    """A stored trajectory's tool calls as ACTION lines, so a planner can copy them."""
    if not isinstance(trajectory, list):
        return ()
    lines = []
    for step in trajectory:
        if isinstance(step, dict) and step.get("type") == "tool" and step.get("ok"):
            args = json.dumps(step.get("args") or {}, ensure_ascii=False)
            lines.append(f"ACTION: {step.get('tool')} {args[:400]}")
    return tuple(lines[:limit])


def _case_block(case: ShownCase) -> str:
    lines = [f"[case {case.id}] task: {case.task.strip()}"]
    if case.plan:
        lines.append(f"plan: {case.plan.strip()}")
    lines.extend(case.actions)
    if case.answer:
        lines.append(f"answer: {case.answer.strip()}")
    return "\n".join(lines)


def react_messages(
    task: str,
    cases: Sequence[ShownCase],
    files: Sequence[str],
    tools_description: str,
    feedback: str | None = None,
) -> list[Message]:
    """The `react` style conversation: worked examples, then the task."""
    good = [c for c in cases if c.succeeded]
    bad = [c for c in cases if not c.succeeded]
    parts = []
    if good:
        parts.append("Past cases that worked (worked examples):\n\n" +
                     "\n\n".join(_case_block(c) for c in good))  # fmt: skip
    if bad:
        parts.append("Past cases that failed or were not checked (avoid their mistakes):\n\n" +
                     "\n\n".join(_case_block(c) for c in bad))  # fmt: skip
    if not cases:
        parts.append("No past cases are available for this task.")
    parts.append(f"Task: {task}{_files_line(files)}")
    if feedback:
        parts.append(f"An earlier attempt failed: {feedback}\nTry a different approach.")
    return [
        {"role": "system", "content": REACT_SYSTEM.format(tools=tools_description or "(none)")},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


# --------------------------------------------------------------------------- parsing

ActionKind = Literal["final", "tool", "none"]


@dataclass(frozen=True, slots=True)
class Action:
    """What one model reply asks for."""

    kind: ActionKind
    answer: str | None = None
    tool: str | None = None
    args: dict[str, Any] | None = None
    problem: str | None = None  # why a tool call could not be read


def parse_final(text: str) -> str | None:
    match = _FINAL.search(text)
    if match is None:
        return None
    answer = match.group(1).strip().splitlines()
    return answer[0].strip() if answer else ""


def parse_plan(text: str) -> str | None:
    match = _PLAN.search(text)
    return match.group(1).strip() if match else None


def parse_used_cases(text: str, shown: Sequence[int]) -> list[int] | None:
    """The ids after USED CASES (only those that were shown); None when the line is absent."""
    match = _USED.search(text)
    if match is None:
        return None
    ids = [int(n) for n in re.findall(r"\d+", match.group(1))]
    allowed = set(shown)
    return sorted({i for i in ids if i in allowed})


def _json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    start = text.find("{")
    if start == -1:
        return {}, None
    decoder = json.JSONDecoder()
    try:
        value, _ = decoder.raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return None, f"the arguments are not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict):
        return None, "the arguments must be a JSON object"
    return value, None


def parse_action(text: str) -> Action:
    """The reply's tool call or final answer (a tool call written first wins)."""
    action = _ACTION.search(text)
    fence = _FENCE.search(text)
    final = _FINAL.search(text)
    first = min(
        (m.start(), kind)
        for m, kind in ((action, "action"), (fence, "fence"), (final, "final"))
        if m is not None
    ) if (action or fence or final) else None  # fmt: skip
    if first is None:
        return Action("none")
    if first[1] == "final":
        return Action("final", answer=parse_final(text))
    if first[1] == "fence":
        assert fence is not None
        return Action("tool", tool="python", args={"code": fence.group(1)})
    assert action is not None
    args, problem = _json_object(action.group(2))
    return Action("tool", tool=action.group(1), args=args, problem=problem)


def extract_code(text: str) -> str | None:
    """The Python in a small model's reply, or None when it is not Python."""
    fence = _FENCE.search(text)
    candidates = [fence.group(1)] if fence else []
    stripped = text.strip().strip("`").strip()
    candidates += [stripped, stripped.splitlines()[0] if stripped else ""]
    for candidate in candidates:
        code = candidate.strip()
        if not code:
            continue
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        # Prose can parse ("12345 in binary is 101011." is a comparison); a computation
        # calls, indexes or does arithmetic somewhere.
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
            if not any(isinstance(node, _COMPUTES) for node in ast.walk(tree)):
                continue
        return code
    return None


def _tokens(text: str) -> list[str]:
    # Numbers and quoted words change from task to task; the shape of the solution does not.
    return [
        "0" if t.isdigit() else t for t in _TOKEN.findall(re.sub(r"'[^']*'|\"[^\"]*\"", "S", text))
    ]


def overlap(output: str, plan: str) -> float:
    """How much of a case's plan the model's output reproduces (0..1)."""
    a, b = _tokens(output), _tokens(plan)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def infer_used(
    output: str,
    cases: Sequence[ShownCase],
    threshold: float = 0.6,
    margin: float | None = None,
) -> list[int]:
    """Cases whose plan the output visibly copies: the citation a model could not give.

    With `margin`, only the cases copied about as closely as the closest one: a small model
    shown a twin's one-liner beside the right example copies one of them, and the other
    should neither take the blame nor the credit."""
    scores = {c.id: overlap(output, c.plan) for c in cases if c.plan}
    scores = {i: v for i, v in scores.items() if v >= threshold}
    if margin is not None and scores:
        best = max(scores.values())
        scores = {i: v for i, v in scores.items() if v >= best - margin}
    return sorted(scores)
