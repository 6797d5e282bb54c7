"""Maps the product layout (store/, policies/, evals/, cli.py at the repository root) into the
`memory_agent` namespace, so each file exists once on disk and no generic top-level name
(`store`, `cli`, ...) is ever installed.

Everything declarative lives in pyproject.toml. This file exists because setuptools can map a
*package* to any folder (`package_dir`) but not a single nested *module*: `py_modules` always
looks for `memory_agent.cli` in the folder of `memory_agent`. Two small command hooks add that
one mapping, for wheels (build_py copies cli.py to memory_agent/cli.py) and for editable installs
(the import finder setuptools generates gets a `memory_agent.cli` -> cli.py entry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).resolve().parent
# Folder at the repository root -> package in the memory_agent namespace.
PACKAGE_DIRS = {
    "memory_agent.store": "store",
    "memory_agent.policies": "policies",
    "memory_agent.evals": "evals",
}
# The one module mapped from a root file: memory_agent.cli is cli.py.
CLI_MODULE, CLI_SOURCE = "memory_agent.cli", "cli.py"


def _packages() -> list[str]:
    packages = find_packages(include=["memory_agent", "memory_agent.*"])
    for package, folder in PACKAGE_DIRS.items():
        packages += [package] + [f"{package}.{sub}" for sub in find_packages(folder)]
    return packages


class BuildPyWithCli(build_py):
    """Copies cli.py into the built package as memory_agent/cli.py."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib, *CLI_MODULE.split(".")).with_suffix(".py")
            self.copy_file(CLI_SOURCE, str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        target = str(Path(self.build_lib, *CLI_MODULE.split(".")).with_suffix(".py"))
        return [*super().get_outputs(include_bytecode), target]

    def get_output_mapping(self) -> dict[str, str]:
        # Used by strict editable installs (a link tree) to link the file back to its source.
        target = str(Path(self.build_lib, *CLI_MODULE.split(".")).with_suffix(".py"))
        return {**super().get_output_mapping(), target: str(ROOT / CLI_SOURCE)}


class EditableWheelWithCli(editable_wheel):
    """Adds memory_agent.cli -> cli.py to the import finder of `pip install -e .`.

    The finder is private setuptools API (`_TopLevelFinder.template_vars`); if it changes, the
    install fails here instead of leaving a package whose console script cannot import.
    """

    def _select_strategy(self, name: str, tag: str, build_lib: Any) -> Any:
        strategy = super()._select_strategy(name, tag, build_lib)
        template_vars = getattr(strategy, "template_vars", None)
        if template_vars is None:  # strict mode: a link tree built from get_output_mapping
            return strategy

        def with_cli() -> tuple[str, str, dict[str, str], dict[str, list[str]]]:
            finder, finder_name, mapping, namespaces = template_vars()
            # The finder tries <path>/__init__.py and then <path>.py: "cli" resolves to cli.py.
            mapping[CLI_MODULE] = str(ROOT / Path(CLI_SOURCE).stem)
            return finder, finder_name, mapping, namespaces

        strategy.template_vars = with_cli
        return strategy


setup(
    packages=_packages(),
    package_dir=PACKAGE_DIRS,
    cmdclass={"build_py": BuildPyWithCli, "editable_wheel": EditableWheelWithCli},
)
