"""Native tool calls in the `react` style: the tools go out as the API's `tools`, the model's
`tool_calls` come back and are run, and a server that refuses `tools` is detected and asked
in the text protocol. Against a scripted OpenAI-compatible HTTP server on loopback (what it
replies is fixed by each test; the requests are what the agent really sent), and against
llama-cpp-python's real server when it is installed."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hash_embedder import HashEmbedder
from llama_server import llama_server as serve_gguf
from llama_server import require_llama_cpp

from memory_agent import MemoryAgent, Settings
from memory_agent.llm.openai_compat import OpenAIChatModel, api_messages
from memory_agent.runtime.tool_calls import tool_specs
from memory_agent.store import CaseMemory
from memory_agent.tools.base import ToolRegistry
from memory_agent.tools.calculator import CalculatorTool

Reply = tuple[int, dict[str, Any]]


def completion(content: str | None = None, tool_call: tuple[str, str] | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if tool_call is not None:
        message["tool_calls"] = [{"id": "call_abc", "type": "function",
                                  "function": {"name": tool_call[0],
                                               "arguments": tool_call[1]}}]  # fmt: skip
        finish = "tool_calls"
    return 200, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }  # fmt: skip


@contextmanager
def scripted_server(respond: Callable[[dict[str, Any]], Reply]) -> Iterator[tuple[str, list[Any]]]:
    """An OpenAI-compatible chat endpoint on loopback: `respond(request body)` decides each
    reply; every request body is recorded."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            status, payload = respond(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def _agent(home: Path, url: str) -> tuple[MemoryAgent, OpenAIChatModel, CaseMemory]:
    settings = Settings(home=home, runtime={"max_attempts": 1, "prompt_style": "react"})
    llm = OpenAIChatModel("scripted", base_url=url, max_retries=0, prompt_style="react")
    memory = CaseMemory(settings, embedder=HashEmbedder())  # type: ignore[arg-type]
    agent = MemoryAgent(settings, llm=llm, memory=memory, policy="none",
                        tools=ToolRegistry([CalculatorTool()]))  # fmt: skip
    return agent, llm, memory


def test_react_style_sends_tools_and_runs_the_models_tool_calls(isolated_home: Path) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        if not any(m["role"] == "tool" for m in body["messages"]):
            return completion("PLAN: 1. multiply\nUSED CASES: none",
                              ("calculator", '{"expression": "6 * 7"}'))  # fmt: skip
        return completion("FINAL ANSWER: 42")

    with scripted_server(respond) as (url, seen):
        agent, llm, memory = _agent(isolated_home, url)
        with memory, agent:
            result = agent.run("What is six times seven?", ground_truth="42")
    assert result.error is None and result.answer == "42" and result.reward == 1.0
    assert llm.native_tools is True
    assert result.plan == "1. multiply"
    tool_steps = [t for t in result.trajectory if t["type"] == "tool"]
    assert tool_steps == [{"type": "tool", "tool": "calculator",
                           "args": {"expression": "6 * 7"}, "ok": True,
                           "output": tool_steps[0]["output"]}]  # fmt: skip
    assert "42" in tool_steps[0]["output"]

    first, second = seen
    spec = first["tools"][0]
    assert spec["type"] == "function" and spec["function"]["name"] == "calculator"
    assert spec["function"]["parameters"]["properties"]["expression"]["type"] == "string"
    # The second request carries the call and its result in the API's own format.
    call_turn = second["messages"][-2]
    assert call_turn["role"] == "assistant" and call_turn["content"].startswith("PLAN:")
    call = call_turn["tool_calls"][0]
    assert call["function"] == {"name": "calculator", "arguments": '{"expression": "6 * 7"}'}
    result_turn = second["messages"][-1]
    assert result_turn == {"role": "tool", "tool_call_id": call["id"],
                           "content": result_turn["content"]}  # fmt: skip
    assert "42" in result_turn["content"] and "tools" in second


def test_a_server_that_refuses_tools_is_detected_and_asked_in_text(
    isolated_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        if "tools" in body:
            refusal = '"auto" tool choice requires --enable-auto-tool-choice'
            return 400, {"error": {"message": refusal, "type": "BadRequestError"}}
        if not any(m["content"].startswith("OBSERVATION:") for m in body["messages"]
                   if m["role"] == "user"):  # fmt: skip
            return completion('PLAN: multiply\nACTION: calculator {"expression": "6 * 7"}')
        return completion("FINAL ANSWER: 42")

    with caplog.at_level(logging.WARNING, logger="memory_agent.llm.openai_compat"):
        with scripted_server(respond) as (url, seen):
            agent, llm, memory = _agent(isolated_home, url)
            with memory, agent:
                result = agent.run("What is six times seven?", ground_truth="42")
                again = agent.run("What is six times seven, again?", ground_truth="42")
    assert result.answer == "42" and result.reward == 1.0 and again.reward == 1.0
    assert llm.native_tools is False
    # One probe with tools, then text only: no further request carries them.
    assert "tools" in seen[0] and all("tools" not in body for body in seen[1:])
    assert len(seen) == 1 + 2 + 2
    assert all("tool_calls" not in m and m["role"] != "tool"
               for body in seen[1:] for m in body["messages"])  # fmt: skip
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "refused native tool calls" in warning and "HTTP 400" in warning


def test_a_server_that_ignores_tools_is_answered_in_text(isolated_home: Path) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        observed = [m for m in body["messages"] if m["role"] in ("user", "tool")]
        if observed[-1]["role"] == "user" and "OBSERVATION" not in observed[-1]["content"]:
            return completion('ACTION: calculator {"expression": "2 ** 10"}')
        return completion("FINAL ANSWER: 1024")

    with scripted_server(respond) as (url, seen):
        agent, llm, memory = _agent(isolated_home, url)
        with memory, agent:
            result = agent.run("What is two to the tenth?", ground_truth="1024")
    assert result.reward == 1.0 and llm.native_tools is True
    # Its text ACTION went back as a native call, since the server took `tools`.
    assert seen[1]["messages"][-1]["role"] == "tool" and "1024" in seen[1]["messages"][-1][
        "content"]  # fmt: skip


def test_bad_tool_call_arguments_reach_the_model_as_an_error(isolated_home: Path) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        tool_turns = [m for m in body["messages"] if m["role"] == "tool"]
        if not tool_turns:
            return completion(None, ("calculator", '{"expression": '))  # cut-off JSON
        return completion(f"FINAL ANSWER: {tool_turns[-1]['content'][:40]}")

    with scripted_server(respond) as (url, seen):
        agent, _, memory = _agent(isolated_home, url)
        with memory, agent:
            result = agent.run("Compute something")
    assert "not valid JSON" in seen[1]["messages"][-1]["content"]
    assert result.error is None


def test_api_messages_translation() -> None:
    messages: list[Any] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": 'PLAN: x\nACTION: calculator {"expression": "1+1"}'},
        {"role": "user", "content": "OBSERVATION: 2"},
        {"role": "assistant", "content": 'ACTION: unknown_tool {"a": 1}'},
        {"role": "user", "content": "OBSERVATION: Error: unknown tool"},
        {"role": "assistant", "content": "ACTION: calculator {}"},  # never answered
    ]
    native = api_messages(messages, ["calculator"])
    assert native[2] == {"role": "assistant", "content": "PLAN: x", "tool_calls": [
        {"id": "call_2", "type": "function",
         "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'}}]}  # fmt: skip
    assert native[3] == {"role": "tool", "tool_call_id": "call_2", "content": "2"}
    assert native[4:] == [dict(m) for m in messages[4:]]  # not a native tool: left as text
    assert api_messages(messages, None) == [dict(m) for m in messages]
    specs = tool_specs(ToolRegistry([CalculatorTool()]))
    assert specs[0]["function"]["parameters"]["type"] == "object"


# ---------------------------------------------------------------------- llama-cpp-python


@pytest.fixture(scope="module")
def llama_tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with its function-calling chat format."""
    require_llama_cpp()
    from memory_agent.llm.local import smollm2_gguf_path

    log = tmp_path_factory.mktemp("llama-tools") / "server.log"
    options = ("--model_alias", "smollm2", "--chat_format", "chatml-function-calling")
    with serve_gguf(smollm2_gguf_path(), log, *options) as url:
        yield url


@pytest.mark.slow
def test_llama_cpp_server_takes_native_tool_calls(llama_tool_server: str) -> None:
    """The real server takes `tools` and its reply is read: a native call comes back as an
    ACTION line for a known tool (a 135M model may also answer in words; either way the
    server accepted the tools and the reply parses)."""
    from memory_agent.runtime.prompts import parse_action

    llm = OpenAIChatModel("smollm2", base_url=llama_tool_server, max_retries=0)
    specs = tool_specs(ToolRegistry([CalculatorTool()]))
    reply = llm.chat(
        [{"role": "system", "content": "Use the calculator tool for arithmetic."},
         {"role": "user", "content": "What is 12 * 12? Call the calculator."}],
        max_tokens=64, tools=specs,
    )  # fmt: skip
    assert llm.native_tools is True, "llama-cpp-python refused the tools"
    action = parse_action(reply.text)
    if action.kind == "tool":
        assert action.tool == "calculator" and isinstance(action.args, dict)
