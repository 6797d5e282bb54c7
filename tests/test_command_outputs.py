"""Commands write their files under the data directory or `--out`, never into the current
folder (bench policy used to write docs/benchmarks/policy_learning_curve.png wherever it ran)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memory_agent.cli import app
from memory_agent.commands.outputs import bench_folder
from memory_agent.settings import Settings


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_bench_folder_defaults_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert bench_folder(settings, None, "llm") == tmp_path / "home" / "bench" / "llm"
    assert bench_folder(settings, tmp_path / "mine", "llm") == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()


POLICY = ["bench", "policy", "--episodes", "50", "--seeds", "1", "--policies", "similarity",
          "--json"]  # fmt: skip
STORE = ["bench", "store", "--synthetic", "--cases", "300", "--queries", "10",
         "--baseline-cases", "0", "--json"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "benchmark", "files"),
    [
        (POLICY, "policy", {"policy_learning_curve.png", "summary.json"}),
        (STORE, "store", {"result.json"}),
    ],
)
def test_benchmarks_write_under_home_or_out_not_the_current_folder(
    cwd: Path, isolated_home: Path, tmp_path: Path, args: list[str], benchmark: str,
    files: set[str],
) -> None:  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    default = isolated_home / "bench" / benchmark
    assert {p.name for p in default.iterdir()} == files
    assert list(cwd.iterdir()) == []

    out = tmp_path / "chosen"
    result = CliRunner().invoke(app, [*args[:2], "--out", str(out), *args[2:]])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == files
    report = json.loads((out / sorted(files)[-1]).read_text())
    assert report  # the figures, as printed
    assert list(cwd.iterdir()) == []
