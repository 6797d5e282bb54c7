"""The `memory-agent` command line (typer). Each command group lives in memory_agent/commands/.

Heavy modules (torch, faiss, sqlalchemy) are imported inside commands, so `--help` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memory_agent.commands.bench import app as bench_app
from memory_agent.commands.common import CliState, new_typer
from memory_agent.commands.eval import app as eval_app
from memory_agent.commands.logs import app as logs_app
from memory_agent.commands.mcp import mcp as mcp_command
from memory_agent.commands.memory import app as memory_app
from memory_agent.commands.policy import app as policy_app
from memory_agent.commands.run import chat as chat_command
from memory_agent.commands.run import run as run_command
from memory_agent.commands.serve import serve as serve_command
from memory_agent.commands.skills import app as skills_app

app = new_typer("An agent that gets better at its work by remembering what worked.")
app.add_typer(memory_app, name="memory")
app.add_typer(policy_app, name="policy")
app.add_typer(logs_app, name="logs")
app.add_typer(bench_app, name="bench")
app.add_typer(skills_app, name="skills")
app.command("run")(run_command)
app.command("chat")(chat_command)
app.add_typer(eval_app, name="eval")
app.command("mcp")(mcp_command)
app.command("serve")(serve_command)


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option(help="Data directory (env MEMORY_AGENT_HOME).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy database URL (env MEMORY_AGENT_DATABASE_URL)."),
    ] = None,
    namespace_token: Annotated[
        str | None,
        typer.Option(
            help="Access token of a protected namespace (env MEMORY_AGENT_NAMESPACE_TOKEN, "
            "which keeps it out of the process list).",
        ),
    ] = None,
) -> None:
    """memory-agent: case memory, learned case selection and evaluation."""
    ctx.obj = CliState(
        {"home": home, "database_url": database_url, "namespace_token": namespace_token}
    )


def main() -> None:
    """Entry point of the `memory-agent` console script."""
    app()
