"""The agent's tools: sandboxed Python, a calculator, attachments, local document search."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory_agent.tools.base import Tool, ToolContext, ToolRegistry, ToolResult, UnknownToolError

if TYPE_CHECKING:
    from memory_agent.settings import Settings

__all__ = [
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "UnknownToolError",
    "default_tools",
]


def default_tools(settings: Settings) -> ToolRegistry:
    """python, calculator and read_file; search_docs when a document folder is set; the tools
    of the configured MCP servers; plus any installed plugins. There is deliberately no shell
    tool."""
    from memory_agent.tools.attachments import ReadFileTool
    from memory_agent.tools.calculator import CalculatorTool
    from memory_agent.tools.python_sandbox import PythonTool

    registry = ToolRegistry([PythonTool(), CalculatorTool(), ReadFileTool()])
    if settings.runtime.docs_dir is not None:
        from memory_agent.tools.docsearch import SearchDocsTool

        registry.register(SearchDocsTool(settings.runtime.docs_dir.expanduser()))
    if settings.runtime.mcp_servers:
        from memory_agent.tools.mcp import mcp_tools

        for server in settings.runtime.mcp_servers:
            for tool in mcp_tools(server, timeout_s=settings.runtime.tool_timeout_s + 10):
                registry.register(tool)
    registry.load_plugins()
    return registry
