"""Tools served by MCP servers (Model Context Protocol, stdio transport) as ordinary tools.

Each call opens its own short session with the server process: slower than a kept-open
connection, but a tool call then never depends on state left by an earlier one, and a hung
server costs one call, not the run. Needs the optional `mcp` package (>= 2).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from memory_agent.errors import DependencyMissingError, InvalidInputError
from memory_agent.tools.base import ToolContext, ToolResult

MCP_INSTALL = 'pip install "mcp>=2"'


def _client() -> tuple[Any, Any, Any]:
    try:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client
    except ImportError as exc:
        raise DependencyMissingError(f"MCP tools need the mcp package: {MCP_INSTALL}") from exc
    return ClientSession, StdioServerParameters, stdio_client


def _command(server: str | Sequence[str]) -> list[str]:
    parts = shlex.split(server) if isinstance(server, str) else list(server)
    if not parts:
        raise InvalidInputError("An MCP server needs a command, e.g. 'python my_server.py'.")
    return parts


async def _with_session(command: list[str], action: Any, timeout_s: float) -> Any:
    session_cls, params_cls, stdio_client = _client()
    params = params_cls(command=command[0], args=command[1:])

    async def run() -> Any:
        async with stdio_client(params) as (read, write):
            async with session_cls(read, write) as session:
                await session.initialize()
                return await action(session)

    return await asyncio.wait_for(run(), timeout=timeout_s)


class McpTool:
    """One tool of an MCP server."""

    def __init__(
        self, command: list[str], name: str, description: str, schema: Mapping[str, Any]
    ) -> None:
        self.command = command
        self.remote_name = name
        self.name = name.replace("-", "_").replace(".", "_")
        self.description = description or f"MCP tool {name}."
        properties = schema.get("properties") or {}
        self.parameters = {
            key: str(spec.get("description") or spec.get("type") or "value")
            for key, spec in properties.items()
            if isinstance(spec, Mapping)
        }

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        async def call(session: Any) -> Any:
            return await session.call_tool(self.remote_name, dict(args))

        try:
            result = asyncio.run(_with_session(self.command, call, context.timeout_s))
        except TimeoutError:
            return ToolResult(
                False, f"MCP tool {self.name} timed out after {context.timeout_s:g} s"
            )
        except Exception as exc:  # a failing server is an observation, not a crash
            return ToolResult(False, f"MCP tool {self.name} failed: {type(exc).__name__}: {exc}")
        texts = [getattr(part, "text", None) for part in getattr(result, "content", [])]
        output = "\n".join(t for t in texts if t) or str(getattr(result, "structured_content", ""))
        return ToolResult(not getattr(result, "is_error", False), output)


def mcp_tools(server: str | Sequence[str], *, timeout_s: float = 30.0) -> list[McpTool]:
    """The tools an MCP server offers (started as `server`, a command line)."""
    command = _command(server)

    async def listing(session: Any) -> Any:
        return await session.list_tools()

    try:
        listed = asyncio.run(_with_session(command, listing, timeout_s))
    except DependencyMissingError:
        raise
    except Exception as exc:
        raise InvalidInputError(
            f"Could not list the tools of MCP server {shlex.join(command)!r}: "
            f"{type(exc).__name__}: {exc}. Check the command (MEMORY_AGENT_MCP_SERVERS)."
        ) from exc
    return [
        McpTool(command, tool.name, tool.description or "", getattr(tool, "input_schema", {}) or {})
        for tool in listed.tools
    ]
