"""`memory-agent mcp`: serve the case memory to other agents over MCP (stdio)."""

from __future__ import annotations

from typing import Annotated

import typer

from memory_agent.commands.common import state


def mcp(
    ctx: typer.Context,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Default namespace for calls that name none."),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Case-selection policy: value, neural, track or similarity (default: settings)."
        ),
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Cases a retrieval returns by default (default: settings).")
    ] = None,
) -> None:
    r"""Serve the memory as an MCP server on stdin/stdout (for Claude Desktop, Cursor, ...).

    Tools: retrieve_cases, record_case, report_outcome, list_cases, get_case, delete_case,
    memory_stats. Needs `pip install 'memory-agent\[mcp]'`.
    """
    from memory_agent.mcp_server import _load_mcp, serve

    _load_mcp()  # a missing package is a clear error before the store opens
    from memory_agent.service import MemoryService

    settings = state(ctx).settings({"namespace": namespace, "policy.name": policy, "policy.k": k})
    with MemoryService(settings) as service:
        serve(service)
