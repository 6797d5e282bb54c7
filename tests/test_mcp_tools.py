"""MCP servers as tools: a real stdio server (tests/data/mcp/arith_server.py) in a subprocess."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_model import ScriptedChatModel

from memory_agent import MemoryAgent, Settings
from memory_agent.errors import InvalidInputError
from memory_agent.store import CaseMemory
from memory_agent.tools import ToolContext, default_tools

pytest.importorskip("mcp", reason='MCP tools need `pip install "mcp>=2"` (in the dev extra)')

SERVER = f"{sys.executable} {Path(__file__).parent / 'data' / 'mcp' / 'arith_server.py'}"


@pytest.fixture
def settings(isolated_home: Path) -> Iterator[Settings]:
    yield Settings(home=isolated_home, runtime={"mcp_servers": [SERVER], "tool_timeout_s": 20})


def test_server_tools_are_registered_and_called(settings: Settings, tmp_path: Path) -> None:
    tools = default_tools(settings)
    assert {"add", "divide"} <= set(tools.names())
    assert "a" in tools.get("add").parameters
    context = ToolContext(workspace=tmp_path, timeout_s=20)
    result = tools.get("add").run({"a": 2, "b": 3}, context)
    assert (result.ok, result.output) == (True, "5")
    failed = tools.get("divide").run({"a": 1, "b": 0}, context)
    assert not failed.ok and "divide" in failed.output


def test_agent_calls_an_mcp_tool(settings: Settings, memory: CaseMemory) -> None:
    llm = ScriptedChatModel(['PLAN: add\nUSED CASES: none\nACTION: add {"a": 40, "b": 2}',
                             "FINAL ANSWER: 42"])  # fmt: skip
    with MemoryAgent(settings, llm=llm, memory=memory) as agent:
        result = agent.run("What is 40 plus 2?", ground_truth="42")
    assert "- add: Add two integers." in llm.calls[0][0]["content"]
    assert result.trajectory[1]["output"] == "42" and result.reward == 1.0


def test_a_broken_server_command_is_a_clear_error(isolated_home: Path) -> None:
    settings = Settings(
        home=isolated_home, runtime={"mcp_servers": [f"{sys.executable} -c 'raise SystemExit(3)'"]}
    )
    with pytest.raises(InvalidInputError, match="MEMORY_AGENT_MCP_SERVERS"):
        default_tools(settings)
