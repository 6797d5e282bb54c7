"""Where commands write their files: under the data directory unless `--out` says otherwise.

Never the current folder by default: a benchmark run from a checkout used to drop its PNG into
docs/ of whatever folder it ran in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memory_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from memory_agent.settings import Settings

OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Output folder (default: HOME/bench/<benchmark>)."),
]


def bench_folder(settings: Settings, out: Path | None, benchmark: str) -> Path:
    """`out`, or HOME/bench/<benchmark>; created if missing."""
    folder = out if out is not None else settings.home / "bench" / benchmark
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"Cannot create the output folder {folder}: {exc}.") from exc
    return folder


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
