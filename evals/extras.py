"""The eval-only packages (the `eval` extra) and the error that says how to install them.

reasoning-gym, pyarrow and matplotlib are not runtime dependencies: the agent and the store run
without them. Every import of them sits inside the function that needs it, wrapped in
`eval_extra`, so a missing package surfaces as one actionable message instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from memory_agent.errors import DependencyMissingError

EVAL_INSTALL = "pip install 'memory-agent[eval]'"
# Import name -> distribution name, for the packages in the `eval` extra.
EVAL_PACKAGES = {"reasoning_gym": "reasoning-gym", "pyarrow": "pyarrow", "matplotlib": "matplotlib"}


@contextmanager
def eval_extra(feature: str) -> Iterator[None]:
    """Turns a missing eval-extra package imported in the block into DependencyMissingError."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top_level = (exc.name or "").partition(".")[0]
        if top_level not in EVAL_PACKAGES:
            raise
        raise DependencyMissingError(
            f"{feature} needs {EVAL_PACKAGES[top_level]}, part of the eval extra: {EVAL_INSTALL}"
        ) from exc
