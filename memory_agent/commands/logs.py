"""`memory-agent logs list|show`: the run log (runs, LLM and tool calls, retrieval, credit)."""

from __future__ import annotations

from typing import Annotated

import typer

from memory_agent.commands.common import clip_line, new_typer, open_memory, print_json, print_table

app = new_typer("Inspect logged runs: every LLM call, tool call, retrieval, reward and credit.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, help="At most this many.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    from memory_agent.store.run_log import run_to_json

    with open_memory(ctx) as memory:
        rows = memory.run_log().recent(limit)
    if json_out:
        print_json([run_to_json(r) for r in rows])
        return
    if not rows:
        typer.echo("No runs logged yet; start one with `memory-agent run TASK`.")
        return
    print_table(
        ("run", "started", "status", "reward", "answer", "task"),
        (
            (
                row.id[:8],
                row.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                row.status,
                "" if row.reward is None else f"{row.reward:g}",
                clip_line(row.answer, 24),
                clip_line(row.task, 50),
            )
            for row in rows
        ),
    )


@app.command()
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    json_out: JsonOpt = False,
) -> None:
    """Show one run and its events in order."""
    from memory_agent.store.run_log import run_to_json

    with open_memory(ctx) as memory:
        log = memory.run_log()
        row = log.get(run_id)
        events = log.events(row.id)
    record = run_to_json(row)
    if json_out:
        print_json({**record, "events": [e.to_json() for e in events]})
        return
    for key, value in record.items():
        typer.echo(f"{key}: {value}")
    typer.echo("events:")
    for event in events:
        timing = "" if event.duration_s is None else f" {event.duration_s:.3f}s"
        tokens = ""
        if event.prompt_tokens is not None:
            tokens = f" tokens {event.prompt_tokens}+{event.completion_tokens}"
        detail = ", ".join(f"{k}={clip_line(str(v), 80)}" for k, v in event.data.items())
        typer.echo(f"  {event.seq:>3} {event.kind} {event.name or ''}{timing}{tokens} {detail}")
