"""The installed distribution: one namespace, a fast CLI, and everything the store needs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generic_names_in_the_users_folder_win_and_we_still_work(tmp_path: Path) -> None:
    for name in ("store", "policies", "evals", "cli"):
        (tmp_path / f"{name}.py").write_text(f"OWNER = 'app-{name}'\n")
    script = textwrap.dedent(
        """
        import numpy as np
        import store, policies, evals, cli
        assert [m.OWNER for m in (store, policies, evals, cli)] == [
            "app-store", "app-policies", "app-evals", "app-cli"]
        import memory_agent.cli, memory_agent.evals, memory_agent.policies
        from memory_agent import CaseMemory, Settings
        from memory_agent.policies.similarity import SimilarityPolicy
        memory = CaseMemory(Settings(home="home"))
        case = memory.add("a task", embedding=np.ones(8, dtype=np.float32))
        assert memory.search(np.ones(8, dtype=np.float32), k=1)[0].case.id == case.id
        print("ok", memory_agent.store.__name__)
        """
    )
    result = run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "memory_agent.store"]


def test_help_answers_without_heavy_imports(tmp_path: Path) -> None:
    probe = (
        "import sys, memory_agent.cli; "
        "heavy = {'torch', 'faiss', 'transformers', 'sentence_transformers', 'sqlalchemy', "
        "'numpy', 'alembic', 'openai'} & set(sys.modules); print(sorted(heavy))"
    )
    result = run([sys.executable, "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    for command in ([str(BIN / "memory-agent"), "--help"],
                    [sys.executable, "-m", "memory_agent", "memory", "--help"]):  # fmt: skip
        result = run(command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
    assert "import" in result.stdout and "search" in result.stdout


@pytest.mark.slow
def test_wheel_holds_only_the_memory_agent_namespace(tmp_path: Path) -> None:
    result = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("memory_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"memory_agent"}
    for required in (
        "memory_agent/cli.py",
        "memory_agent/store/case_memory.py",
        "memory_agent/store/migrations/env.py",
        "memory_agent/store/migrations/versions/0001_initial.py",
        "memory_agent/policies/base.py",
        "memory_agent/evals/scorer.py",
    ):
        assert required in names
