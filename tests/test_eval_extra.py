"""The `eval` extra: reasoning-gym, pyarrow and matplotlib are optional, imported lazily, and a
missing one says exactly how to install it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from memory_agent.errors import DependencyMissingError
from memory_agent.evals.extras import EVAL_INSTALL, EVAL_PACKAGES
from memory_agent.evals.gaia import _parquet_rows
from memory_agent.evals.policy_benchmark import plot_curves
from memory_agent.evals.stream import learning_curve, make_tasks


@pytest.mark.parametrize(
    ("package", "call"),
    [
        ("pyarrow", lambda tmp: _parquet_rows(tmp / "metadata.parquet")),
        ("reasoning_gym", lambda tmp: make_tasks(["count_bits"], 2, seed=0)),
        ("matplotlib", lambda tmp: learning_curve([], tmp / "curve.png", title="t")),
        ("matplotlib", lambda tmp: plot_curves([], tmp / "curve.png", "t")),
    ],
)
def test_a_missing_eval_package_names_the_extra(
    package: str, call: Callable[[Path], object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now fails as if missing
    with pytest.raises(DependencyMissingError) as raised:
        call(tmp_path)
    assert EVAL_INSTALL in str(raised.value) and EVAL_PACKAGES[package] in str(raised.value)
    assert EVAL_INSTALL == "pip install 'memory-agent[eval]'"


def test_other_missing_modules_are_not_blamed_on_the_extra() -> None:
    from memory_agent.evals.extras import eval_extra

    with pytest.raises(ModuleNotFoundError), eval_extra("x"):
        import memory_agent_no_such_module  # noqa: F401


def test_nothing_imports_the_eval_packages_at_module_level() -> None:
    # Without the extra installed, the CLI, the commands and every eval module must import.
    probe = """
import importlib, pkgutil, sys
class Missing:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in {"reasoning_gym", "pyarrow", "matplotlib"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Missing)
import memory_agent.cli, memory_agent.commands, memory_agent.evals
for package in (memory_agent.commands, memory_agent.evals):
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_runtime_dependencies_leave_them_to_the_extra() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"])
    assert not [d for d in EVAL_PACKAGES.values() if d in runtime]
    extra = project["project"]["optional-dependencies"]["eval"]
    assert sorted(d.split(">")[0] for d in extra) == sorted(EVAL_PACKAGES.values())
