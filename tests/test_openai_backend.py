"""The OpenAI-compatible backend against a real server: llama-cpp-python's OpenAI-compatible
server with the same SmolLM2 GGUF, started here on loopback.

llama-cpp-python compiles for about 8 minutes, so it is no dependency: CI installs it
(`.ci/run`) and sets MEMORY_AGENT_TEST_REQUIRE_LLAMA_SERVER=1; elsewhere these tests skip
when it is missing.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_agent import MemoryAgent, Settings
from memory_agent.errors import MemoryAgentError
from memory_agent.llm import make_chat_model
from memory_agent.llm.openai_compat import LLMCallError, OpenAIChatModel
from memory_agent.store import CaseMemory

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("MEMORY_AGENT_TEST_REQUIRE_LLAMA_SERVER"):
            pytest.fail("llama-cpp-python[server] is required here but not installed")
        pytest.skip('llama-cpp-python is not installed (pip install "llama-cpp-python[server]")')
    from memory_agent.llm.local import smollm2_gguf_path

    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()),
             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--n_threads", "2"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_chat_reports_usage_and_honours_stop(llama_server: str) -> None:
    model = OpenAIChatModel("smollm2", base_url=llama_server, prompt_style="code")
    reply = model.chat(
        [{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        max_tokens=40,
        stop=["5"],
    )
    assert reply.prompt_tokens > 5 and 0 < reply.completion_tokens <= 40
    assert "5" not in reply.text and reply.elapsed_s > 0


def test_agent_learns_through_the_openai_compatible_path(
    llama_server: str, isolated_home: Path, minilm: object
) -> None:
    runtime = {"model": "smollm2", "base_url": llama_server, "prompt_style": "code",
               "max_attempts": 1}  # fmt: skip
    settings = Settings(home=isolated_home, runtime=runtime)
    llm = make_chat_model(settings)
    assert isinstance(llm, OpenAIChatModel) and llm.prompt_style == "code"
    with CaseMemory(settings, embedder=minilm) as memory:  # type: ignore[arg-type]
        case = memory.add("Spell the word 'planet' backward.", plan="'planet'[::-1]",
                          reward=1.0, outcome="success")  # fmt: skip
        with MemoryAgent(settings, llm=llm, memory=memory) as agent:
            result = agent.run("Spell the word 'memory' backward.", ground_truth="yromem")
        assert result.error is None and result.cases_shown == [case.id]
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        assert result.reward == 1.0, (result.answer, result.plan)
        assert memory.get(case.id).stats["plan"].last_reward == 1.0


def test_unreachable_endpoint_is_a_clear_error() -> None:
    model = OpenAIChatModel(
        "smollm2", base_url=f"http://127.0.0.1:{_free_port()}/v1", timeout_s=2, max_retries=0
    )
    with pytest.raises(LLMCallError, match="--base-url"):
        model.chat([{"role": "user", "content": "hi"}], max_tokens=4)


def test_openai_without_a_key_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MemoryAgentError, match="MEMORY_AGENT_API_KEY"):
        OpenAIChatModel("gpt-4o-mini")
