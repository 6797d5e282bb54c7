"""What every command group shares: the error-to-message group, settings and output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from memory_agent.errors import InvalidInputError, MemoryAgentError

if TYPE_CHECKING:
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory


class FriendlyErrors(TyperGroup):
    """Turns MemoryAgentError into a one-line message and its exit code, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MemoryAgentError as exc:
            typer.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def new_typer(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        cls=FriendlyErrors,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


@dataclass
class CliState:
    """Settings overrides collected from the global flags."""

    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, more: Mapping[str, Any] | None = None) -> Settings:
        """The settings in force: environment, then the global flags, then `more` (keys as in
        `Settings.from_overrides`: `home` or `group.knob`); None values are not overrides."""
        from pydantic import ValidationError

        from memory_agent.settings import Settings

        values = {k: v for k, v in {**self.overrides, **(more or {})}.items() if v is not None}
        try:
            return Settings.from_overrides(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidInputError(
                f"Invalid settings ({problems}). Check the MEMORY_AGENT_* environment "
                "variables and the command-line flags."
            ) from exc


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def open_memory(ctx: typer.Context) -> CaseMemory:
    from memory_agent.store import CaseMemory

    return CaseMemory(state(ctx).settings())


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def clip_line(text: str | None, width: int = 100) -> str:
    """`text` on one line (runs of whitespace as one space), cut to `width` with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table of `rows` under the headings `columns`, on standard output."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
