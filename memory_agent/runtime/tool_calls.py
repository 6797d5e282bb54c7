"""Calling the tools for the episode: checks, a time limit, and a record of every call.

Nothing a tool does may crash the run: a bad call, an unknown tool, an exception or a
timeout becomes an error observation the model may recover from.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory_agent.runtime.prompts import clip
from memory_agent.tools.base import ToolContext, ToolResult

if TYPE_CHECKING:
    from memory_agent.runtime.state import EpisodeState, Pending
    from memory_agent.settings import Settings
    from memory_agent.store.run_log import RunLog
    from memory_agent.tools.base import ToolRegistry


class ToolCalls:
    """Runs the pending tool call of an episode and logs it."""

    def __init__(self, settings: Settings, tools: ToolRegistry, log: RunLog) -> None:
        self.settings = settings
        self.tools = tools
        self.log = log

    def workspace(self, run_id: str) -> Path:
        return self.settings.home / "workspaces" / run_id

    def call(
        self, s: EpisodeState, pending: Pending, trajectory: list[dict[str, Any]]
    ) -> ToolResult:
        """Run `pending`, log it and append it to `trajectory`; errors become the result."""
        name, args = str(pending["tool"]), pending["args"] or {}
        started = time.perf_counter()
        result = self._checked_run(s, pending, name, args)
        self.log.event(
            s["run_id"],
            "tool",
            name,
            duration_s=time.perf_counter() - started,
            args=jsonable(args),
            ok=result.ok,
            output=clip(result.output),
            data=jsonable(result.data),
        )
        trajectory.append(
            {
                "type": "tool",
                "tool": name,
                "args": jsonable(args),
                "ok": result.ok,
                "output": clip(result.output, 2_000),
            }
        )
        return result

    def _checked_run(
        self, s: EpisodeState, pending: Pending, name: str, args: dict[str, Any]
    ) -> ToolResult:
        limit = self.settings.runtime.max_tool_calls
        remaining = s["deadline"] - time.time()
        if pending["problem"]:
            return ToolResult(
                False,
                f"Error: could not read the call to {name}: "
                f"{pending['problem']}. Write ACTION: {name} {{...JSON...}}.",
            )
        if s["tool_calls"] >= limit:
            return ToolResult(
                False,
                f"Error: tool budget used up (max_tool_calls={limit}); give the FINAL ANSWER.",
            )
        if name not in self.tools:
            return ToolResult(
                False,
                f"Error: unknown tool {name!r}; available tools: {', '.join(self.tools.names())}.",
            )
        if remaining <= 0:
            return ToolResult(False, "Error: the task's time budget is used up.")
        timeout = max(0.5, min(self.settings.runtime.tool_timeout_s, remaining))
        context = ToolContext(
            workspace=self.workspace(s["run_id"]),
            files=tuple(Path(f) for f in s["files"]),
            timeout_s=timeout,
            memory_mb=self.settings.runtime.sandbox_memory_mb,
            allow_unisolated=self.settings.runtime.sandbox_allow_unisolated,
        )
        return self._run(name, args, context, timeout)

    def _run(
        self, name: str, args: dict[str, Any], context: ToolContext, timeout: float
    ) -> ToolResult:
        tool = self.tools.get(name)
        # A thread bounds tools that have no timeout of their own; the sandbox kills its
        # process itself, so the grace period only matters for in-process tools.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = pool.submit(tool.run, args, context)
        try:
            return future.result(timeout=timeout + 5)
        except concurrent.futures.TimeoutError:
            return ToolResult(False, f"Error: {name} timed out after {timeout:g} s.")
        except Exception as exc:  # a broken tool is an observation, not a crash
            return ToolResult(False, f"Error: {name} failed: {type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def tool_specs(tools: ToolRegistry) -> list[dict[str, Any]]:
    """The tools as OpenAI function specs, for models that take native tool calls. A tool
    names its arguments with a one-line description each; they are sent as strings unless
    the tool carries a JSON schema of its own (`input_schema`, as MCP tools do)."""
    specs = []
    for name in tools.names():
        tool = tools.get(name)
        schema = getattr(tool, "input_schema", None)
        if not isinstance(schema, dict) or schema.get("type") != "object":
            schema = {
                "type": "object",
                "properties": {arg: {"type": "string", "description": text}
                               for arg, text in tool.parameters.items()},
            }  # fmt: skip
        specs.append({"type": "function",
                      "function": {"name": name, "description": tool.description,
                                   "parameters": schema}})  # fmt: skip
    return specs


def jsonable(value: Any) -> Any:
    """`value` with anything JSON cannot hold replaced by its repr, for logs and checkpoints."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)
