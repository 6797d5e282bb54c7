"""The OpenAI-compatible backend against a real server: llama-cpp-python's OpenAI-compatible
server with the same SmolLM2 GGUF, started here on loopback.

The server comes from tests/llama_server.py (skips where llama-cpp-python is missing, fails
in CI where it must be there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import free_port
from llama_server import llama_server as serve_gguf
from llama_server import require_llama_cpp

from memory_agent import MemoryAgent, Settings
from memory_agent.errors import MemoryAgentError
from memory_agent.llm import make_chat_model
from memory_agent.llm.openai_compat import LLMCallError, OpenAIChatModel
from memory_agent.store import CaseMemory

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_llama_cpp()
    from memory_agent.llm.local import smollm2_gguf_path

    log = tmp_path_factory.mktemp("llama") / "server.log"
    with serve_gguf(smollm2_gguf_path(), log, "--model_alias", "smollm2") as url:
        yield url


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
        "smollm2", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2, max_retries=0
    )
    with pytest.raises(LLMCallError, match="--base-url"):
        model.chat([{"role": "user", "content": "hi"}], max_tokens=4)


def test_openai_without_a_key_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MemoryAgentError, match="MEMORY_AGENT_API_KEY"):
        OpenAIChatModel("gpt-4o-mini")
