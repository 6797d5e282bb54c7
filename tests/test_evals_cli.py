"""`memory-agent eval ...`: argument checks and clean errors (no traceback, exit codes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memory_agent.cli import app

SAMPLE = Path(__file__).resolve().parent / "data" / "gaia"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_eval_group_is_listed() -> None:
    code, output = invoke("eval", "--help")
    assert code == 0 and "gaia" in output and "stream" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "gaia", "/definitely/not/here"], "is not a folder"),
        (["eval", "gaia", str(SAMPLE), "--split", "dev"], "No metadata.jsonl or metadata.parquet"),
        (["eval", "gaia", str(SAMPLE / "validation"), "--policy", "bogus"], "Unknown policy"),
        (["eval", "gaia", str(SAMPLE), "--no-memory", "--frozen-memory"], "Choose one of"),
        (["eval", "gaia", str(SAMPLE), "--resume"], "--resume needs the --run-name"),
        (["eval", "stream", "--families", "count_bits,bogus"], "Unknown family 'bogus'"),
        (["eval", "stream", "--policies", "none,bogus"], "Unknown policy 'bogus'"),
        (["eval", "stream", "--tasks", "0"], "at least 1"),
    ],
)
def test_bad_arguments_give_a_clean_error(args: list[str], message: str) -> None:
    code, output = invoke(*args)
    assert code == 2
    assert message in output and "Traceback" not in output


def test_stream_refuses_a_used_output_folder(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    code, output = invoke("eval", "stream", "--out", str(tmp_path), "--policies", "none")
    assert code == 2 and "--resume" in output
