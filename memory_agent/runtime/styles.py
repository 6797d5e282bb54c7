"""The two planner protocols behind one interface, chosen once when the episode is built.

`code` (small models): cases are prior turns, the reply is one line of Python, and its
output is the answer. `react` (capable models): worked examples, a plan citing cases, tool
calls with observations, then a FINAL ANSWER; with a model that takes native tool calls,
the tools also go out as the API's `tools` (`chat_options`). See `prompts` for the texts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from memory_agent.runtime import prompts
from memory_agent.runtime.prompts import ShownCase
from memory_agent.runtime.state import EpisodeState, EpisodeUpdate, Pending, RetryNote, no_action

if TYPE_CHECKING:
    from memory_agent.llm.base import ChatModel, Message
    from memory_agent.settings import Settings
    from memory_agent.tools.base import ToolRegistry, ToolResult


class Observed(NamedTuple):
    """What a tool's result does to the state, and whether the model then takes a step."""

    update: EpisodeUpdate
    ask_model: bool


def _file_names(s: EpisodeState) -> list[str]:
    return [Path(f).name for f in s["files"]]


class PromptStyle(ABC):
    """How the planner is prompted and how its replies become state."""

    name: ClassVar[str]
    # The store filter for the cases this style can show at all (None: any case).
    case_filter: ClassVar[dict[str, Any] | None] = None
    stop: ClassVar[tuple[str, ...]] = ()

    def max_tokens(self, settings: Settings) -> int:
        return settings.runtime.max_new_tokens

    def chat_options(self, llm: ChatModel, tools: ToolRegistry) -> dict[str, Any]:
        """Extra arguments for the model's `chat` (none by default)."""
        return {}

    @abstractmethod
    def prompt(
        self, s: EpisodeState, cases: Sequence[ShownCase], tools: ToolRegistry
    ) -> list[Message]:
        """The conversation that starts an attempt (a refine attempt carries `retry_note`)."""

    @abstractmethod
    def parse(self, s: EpisodeState, text: str, first: bool) -> EpisodeUpdate:
        """The reply `text` as a state update: plan, citation, answer, the pending action."""

    @abstractmethod
    def observe(
        self, s: EpisodeState, pending: Pending, result: ToolResult, spent: bool
    ) -> Observed:
        """The update a tool's `result` makes; `spent`: the tool budget is now used up."""


class CodeStyle(PromptStyle):
    """One line of Python per reply; the sandbox's output is the answer."""

    name = "code"
    # Only successful cases become example turns: a small model copies what it sees, so a
    # failure would teach it the wrong program. If the policy could pick failures, a learned
    # one that ranks an unvisited failure high (its optimistic prior) would leave the model
    # with no example; so it chooses among the successes only.
    case_filter = {"outcome": "success"}

    def max_tokens(self, settings: Settings) -> int:
        return min(settings.runtime.max_new_tokens, 96)

    def prompt(
        self, s: EpisodeState, cases: Sequence[ShownCase], tools: ToolRegistry
    ) -> list[Message]:
        messages = prompts.code_messages(s["task"], cases, _file_names(s))
        retry = s["retry_note"]
        if retry:
            messages += prompts.code_retry(retry["previous"], retry["observation"])
        return messages

    def parse(self, s: EpisodeState, text: str, first: bool) -> EpisodeUpdate:
        final = prompts.parse_final(text)
        if final is not None:
            return {"answer": final, "pending": None, "plan": text}
        code = prompts.extract_code(text)
        if code is None:
            # Not Python: the reply itself is the answer (first line, as GAIA wants one).
            lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
            return {"answer": lines[0] if lines else None, "pending": None, "plan": None}
        pending: Pending = {
            "kind": "tool",
            "tool": "python",
            "args": {"code": code},
            "problem": None,
        }
        return {"plan": code, "pending": pending}

    def observe(
        self, s: EpisodeState, pending: Pending, result: ToolResult, spent: bool
    ) -> Observed:
        # The small model's line was the plan; its output is the answer.
        if result.ok:
            lines = [x for x in result.output.strip().splitlines() if x.strip()]
            return Observed({"answer": lines[-1].strip() if lines else "", "pending": None}, False)
        note: RetryNote = {
            "previous": str(pending["args"].get("code", "")),
            "observation": result.output,
        }
        return Observed({"pending": None, "retry_note": note}, False)


class ReactStyle(PromptStyle):
    """PLAN, USED CASES, then ACTION lines answered by OBSERVATIONs, until a FINAL ANSWER."""

    name = "react"
    # The model must not invent the tool's observation: stop where it would write one.
    stop = (prompts.OBSERVATION_MARKER,)

    def chat_options(self, llm: ChatModel, tools: ToolRegistry) -> dict[str, Any]:
        """The tools as the API's `tools`, for a model that takes native tool calls (its
        `native_tools` is not False); its tool calls come back as ACTION lines, so `parse`
        reads both. The prompt still describes the text protocol: a server that ignores
        `tools` gets the same task in words."""
        from memory_agent.runtime.tool_calls import tool_specs

        if getattr(llm, "native_tools", False) is False or not tools.names():
            return {}
        return {"tools": tool_specs(tools)}

    def prompt(
        self, s: EpisodeState, cases: Sequence[ShownCase], tools: ToolRegistry
    ) -> list[Message]:
        retry = s["retry_note"]
        feedback = retry["observation"] if retry else None
        return prompts.react_messages(s["task"], cases, _file_names(s), tools.describe(), feedback)

    def parse(self, s: EpisodeState, text: str, first: bool) -> EpisodeUpdate:
        out: EpisodeUpdate = {}
        plan = prompts.parse_plan(text)
        if plan and not s["plan"]:
            out["plan"] = plan
        cited = prompts.parse_used_cases(text, s["shown"])
        if cited is not None and s["cited"] is None:
            out["cited"] = cited
        action = prompts.parse_action(text)
        if action.kind == "final":
            out["answer"], out["pending"] = action.answer, None
        elif action.kind == "tool":
            out["pending"] = {
                "kind": "tool",
                "tool": action.tool,
                "args": action.args or {},
                "problem": action.problem,
            }
        else:
            out["pending"] = no_action()
        if first and not plan and not s["plan"]:
            out["plan"] = prompts.clip(text, 2_000)
        return out

    def observe(
        self, s: EpisodeState, pending: Pending, result: ToolResult, spent: bool
    ) -> Observed:
        messages: list[Message] = [
            *s["messages"],
            {
                "role": "user",
                "content": f"{prompts.OBSERVATION_MARKER} {prompts.clip(result.output)}",
            },
        ]
        if spent:
            messages.append({"role": "user", "content": prompts.TOOL_BUDGET_SPENT})
        return Observed({"messages": messages}, True)


def style_for(name: str) -> PromptStyle:
    """The style a chat model's `prompt_style` names ("code" or "react")."""
    return CodeStyle() if name == "code" else ReactStyle()
