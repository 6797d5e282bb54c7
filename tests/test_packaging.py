"""The installed distribution: one namespace, a fast CLI, and everything the store needs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Where memory_agent is imported from: the repository (editable) or site-packages.
INSTALLED = Path(__import__("memory_agent").__file__).resolve().parent.parent


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
        for module in (memory_agent.store, memory_agent.policies, memory_agent.evals,
                       memory_agent.cli):
            print(module.__file__)
        """
    )
    result = run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ok, name, *files = result.stdout.split()
    assert [ok, name] == ["ok", "memory_agent.store"]
    # Ours (the repository for an editable install, site-packages otherwise), never the app's.
    assert all(Path(f).resolve().is_relative_to(INSTALLED) for f in files), files
    assert [Path(f).parent.name for f in files[:3]] == ["store", "policies", "evals"]
    assert Path(files[3]).name == "cli.py"


def test_the_tests_import_our_packages_not_the_root_folders() -> None:
    # pytest's rootdir insertion or `python -m pytest` (cwd on sys.path) would make the root
    # folders importable as top-level `store` etc.; every test must go through memory_agent.*.
    import memory_agent.store

    assert Path(memory_agent.store.__file__).resolve().parent.parent == INSTALLED
    top_level = {"store", "policies", "evals", "cli"} & set(sys.modules)
    assert not top_level, f"imported as top-level modules: {sorted(top_level)}"


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
        "memory_agent/store/migrations/script.py.mako",
    ):
        assert required in names
    migrations = sorted(p.name for p in (REPO / "store/migrations/versions").glob("0*.py"))
    assert len(migrations) >= 6
    for migration in migrations:
        assert f"memory_agent/store/migrations/versions/{migration}" in names
    # No generic top-level name, not even as a module file or in the record of top levels.
    assert not {"store", "policies", "evals", "cli", "cli.py"} & top_level
    (top_level_txt,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
    if top_level_txt:
        assert zipfile.ZipFile(wheel).read(top_level_txt).decode().split() == ["memory_agent"]

    # Installed from the wheel (non-editable), next to an app's own store.py and policies.py.
    target, app = tmp_path / "site", tmp_path / "app"
    result = run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                  str(target), str(wheel)], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    app.mkdir()
    for name in ("store", "policies"):
        (app / f"{name}.py").write_text(f"OWNER = 'app-{name}'\n")
    probe = (
        "import store, memory_agent.store, memory_agent.policies, memory_agent.cli; "
        "print(store.OWNER, memory_agent.store.__file__, memory_agent.policies.__file__, "
        "memory_agent.cli.__file__, memory_agent.cli.main.__module__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=app, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    owner, store_file, policies_file, cli_file, cli_module = result.stdout.split()
    assert owner == "app-store" and cli_module == "memory_agent.cli"
    for file, expected in ((store_file, "memory_agent/store/__init__.py"),
                           (policies_file, "memory_agent/policies/__init__.py"),
                           (cli_file, "memory_agent/cli.py")):  # fmt: skip
        assert file == str(target / expected)
