"""Type-check the memory_agent namespace as it is installed (strict mypy, pyproject options).

mypy names a module after its folders, so store/database.py would be checked as
`store.database` and `import memory_agent.store` would not resolve: store/, policies/, evals/ and
cli.py live at the repository root and reach the namespace through setup.py's mapping, which mypy
neither reads nor (for editable installs) follows. This passes mypy the same mapping: every file
as a BuildSource with its memory_agent.* name, so errors still point at the real files.

Usage: python scripts/typecheck.py [extra mypy arguments]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent
# Root folder or file -> its name in the namespace; mirrors PACKAGE_DIRS and CLI_MODULE in setup.py.
MAPPED = {
    "store": "memory_agent.store",
    "policies": "memory_agent.policies",
    "evals": "memory_agent.evals",
    "cli.py": "memory_agent.cli",
}


def mapped_sources() -> list[BuildSource]:
    sources: list[BuildSource] = []
    for location, name in MAPPED.items():
        path = Path(location)
        if path.is_file():
            sources.append(BuildSource(str(path), name))
            continue
        for file in sorted(path.rglob("*.py")):
            parts = file.relative_to(path).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            sources.append(BuildSource(str(file), ".".join((name, *parts))))
    return sources


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    sources, options = process_options(["memory_agent", *argv])
    sources += mapped_sources()
    try:
        messages = build.build(sources, options).errors
    except CompileError as exc:  # a blocking error (syntax, duplicate module): always a failure
        print("\n".join(exc.messages))
        return 2
    print("\n".join(messages))
    errors = sum(": error:" in message for message in messages)
    if errors:
        print(f"Found {errors} errors in the memory_agent namespace ({len(sources)} source files)")
        return 1
    print(f"Success: no issues found in {len(sources)} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
