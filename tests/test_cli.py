"""The `memory-agent` command line, driven through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memory_agent.cli import app

runner = CliRunner()


@pytest.fixture
def cli_db(database_url: str, minilm: object) -> list[str]:
    """Global flags pointing the CLI at the test database (both backends)."""
    return ["--database-url", database_url]


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_import_search_list_show_delete_export(
    cli_db: list[str], memento_sample: Path, tmp_path: Path
) -> None:
    code, out, _ = invoke([*cli_db, "memory", "import", str(memento_sample), "-f", "memento"])
    assert code == 0, out
    assert "Imported 200 case(s)" in out

    code, out, _ = invoke(
        [*cli_db, "memory", "search", "In what country is Northland Communications?", "-k", "3",
         "--json"]
    )  # fmt: skip
    assert code == 0
    hits = json.loads(out)
    assert len(hits) == 3
    assert hits[0]["task"] == "In what country is Northland Communications?"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    case_id = hits[0]["id"]

    code, out, _ = invoke([*cli_db, "memory", "search", "country of a company", "--filter",
                           "outcome=failure", "--json"])  # fmt: skip
    assert code == 0 and {h["outcome"] for h in json.loads(out)} == {"failure"}

    code, out, _ = invoke([*cli_db, "memory", "list", "--limit", "5", "--json"])
    assert code == 0 and len(json.loads(out)) == 5

    code, out, _ = invoke([*cli_db, "memory", "show", str(case_id), "--json"])
    assert code == 0 and json.loads(out)["plan"].startswith("{")

    code, out, _ = invoke([*cli_db, "memory", "delete", str(case_id)])
    assert code == 0 and f"Deleted case {case_id}" in out

    code, out, _ = invoke([*cli_db, "memory", "stats", "--json"])
    stats = json.loads(out)
    assert code == 0
    assert stats["cases"] == 199
    assert stats["index_kind"] == "flat"
    assert stats["bytes_per_case"] > 0

    target = tmp_path / "out.jsonl"
    code, out, _ = invoke([*cli_db, "memory", "export", str(target)])
    assert code == 0 and len(target.read_text().splitlines()) == 199


def test_errors_are_messages_not_tracebacks(cli_db: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "fine"}\nnot json\n')
    code, out, err = invoke([*cli_db, "memory", "import", str(bad)])
    assert code == 2
    assert "Error:" in err and "line 2: not valid JSON" in err and "Traceback" not in err

    code, _, err = invoke([*cli_db, "memory", "show", "12345"])
    assert code == 3 and "No case with id 12345" in err

    code, _, err = invoke([*cli_db, "memory", "search", "anything", "-n", "ghost"])
    assert code == 3 and "Namespace 'ghost' does not exist" in err

    code, _, err = invoke([*cli_db, "memory", "import", str(tmp_path / "missing.jsonl")])
    assert code == 2 and "Cannot read" in err


def test_skip_invalid_and_json_report(cli_db: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"task": "one"}\n{"task": ""}\n{"task": "two"}\n')
    code, out, _ = invoke([*cli_db, "memory", "import", str(bad), "--skip-invalid", "--json"])
    assert code == 0
    report = json.loads(out)
    assert report["added"] == 2
    assert report["invalid"][0]["line"] == 2


def test_unreachable_database_and_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = invoke(
        ["--database-url", "postgresql+psycopg://u:pw@127.0.0.1:1/db", "memory", "stats"]
    )
    assert code == 4 and "Could not connect" in err and "pw" not in err
    monkeypatch.setenv("MEMORY_AGENT_SHORTLIST_SIZE", "lots")
    code, _, err = invoke(["memory", "stats"])
    assert code == 2 and "shortlist_size" in err and "MEMORY_AGENT_" in err


def test_budget_and_dedupe(cli_db: list[str], tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    tasks = ["What is the capital of France?", "What is the capital of France ?", "Spell cat."]
    cases.write_text("".join(json.dumps({"task": t, "reward": 1.0}) + "\n" for t in tasks))
    assert invoke([*cli_db, "memory", "import", str(cases)])[0] == 0
    code, out, _ = invoke([*cli_db, "memory", "dedupe"])
    assert code == 0 and "Merged 1 case(s) into 1" in out
    code, out, _ = invoke([*cli_db, "memory", "budget", "1"])
    assert code == 0 and "evicted 1" in out and "Budget: 1" in out


def test_settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, minilm: object
) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("MEMORY_AGENT_HOME", str(home))
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"task": "hello"}) + "\n")
    assert invoke(["memory", "import", str(cases)])[0] == 0
    assert (home / "memory.db").exists()
    code, out, _ = invoke(["--home", str(tmp_path / "flag"), "memory", "stats", "--json"])
    assert code == 0 and json.loads(out)["cases"] == 0
    assert (tmp_path / "flag" / "memory.db").exists()


def test_run_and_chat_share_the_agent_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from memory_agent.commands import run as run_module
    from memory_agent.errors import InvalidInputError

    seen: list[run_module.AgentOptions] = []

    def refuse(options: run_module.AgentOptions, ctx: object) -> None:
        seen.append(options)
        raise InvalidInputError("no agent in this test")

    monkeypatch.setattr(run_module.AgentOptions, "agent", refuse)
    flags = ["-m", "tiny", "--base-url", "http://model", "-p", "none", "-n", "ns",
             "--prompt-style", "react", "-k", "2"]  # fmt: skip
    for words in (["run", "What is six times seven?", "--no-learn"], ["chat"]):
        code, _, err = invoke([*words, *flags])
        assert code != 0 and "no agent in this test" in err
    expected = run_module.AgentOptions("tiny", "http://model", "none", "ns", "react", 2)
    assert seen == [expected, expected]
    for command in ("run", "chat"):
        _, out, _ = invoke([command, "--help"])
        assert all(flag in out for flag in ("--model", "--base-url", "--policy", "-k"))
