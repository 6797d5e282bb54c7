"""Tools are plugins registered by name; the executor calls them with JSON arguments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from memory_agent.errors import InvalidInputError

ENTRY_POINT_GROUP = "memory_agent.tools"


class UnknownToolError(InvalidInputError):
    """A tool name nobody registered."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool call may touch: its task's workspace, attached files, a time limit."""

    workspace: Path
    files: tuple[Path, ...] = ()
    timeout_s: float = 20.0
    memory_mb: int = 1024
    # Settings.sandbox_allow_unisolated: run the python tool without bubblewrap (unsafe).
    allow_unisolated: bool = False


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's observation. `ok=False` is an error the model may recover from."""

    ok: bool
    output: str
    data: dict[str, Any] = field(default_factory=dict)


class Tool(Protocol):
    """A named capability. `parameters` maps argument names to a one-line description."""

    name: str
    description: str
    parameters: dict[str, str]

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult: ...


class ToolRegistry:
    """Tools by name. Plugins from other packages register through the
    `memory_agent.tools` entry-point group (each entry point names a zero-argument factory)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool, *, replace: bool = False) -> None:
        if not tool.name.isidentifier():
            raise InvalidInputError(
                f"Tool name {tool.name!r} must be an identifier (letters, digits, underscore)."
            )
        if tool.name in self._tools and not replace:
            raise InvalidInputError(
                f"A tool called {tool.name!r} is already registered; pass replace=True."
            )
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownToolError(
                f"Unknown tool {name!r}; available tools: {', '.join(self.names()) or 'none'}."
            )
        return tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def describe(self) -> str:
        """One block per tool, for the planner's system prompt."""
        lines = []
        for name in self.names():
            tool = self._tools[name]
            args = ", ".join(f'"{k}": {v}' for k, v in tool.parameters.items())
            lines.append(f"- {name}: {tool.description} Arguments: {{{args}}}")
        return "\n".join(lines)

    def load_plugins(self) -> list[str]:
        """Register the tools other installed packages advertise; returns their names."""
        from importlib.metadata import entry_points

        added = []
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            tool = entry.load()()
            self.register(tool, replace=True)
            added.append(tool.name)
        return added
