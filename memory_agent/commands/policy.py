"""`memory-agent policy ...`: inspect and reset what the case-selection policies learned."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from memory_agent.commands.common import clip_line, new_typer, open_memory, print_json

app = new_typer("Inspect and reset the learned case-selection values.")

NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: from settings).")
]


@app.command("stats")
def stats(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    top: Annotated[int, typer.Option(min=1, max=100, help="Best and worst cases to list.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-stage value summaries with the top and bottom cases, and saved policy state."""
    from rich.console import Console
    from rich.table import Table

    with open_memory(ctx) as memory:
        ns = namespace if namespace is not None else memory.settings.namespace
        stages = memory.case_stats.summary(ns, top=top)
        saved = memory.policy_states.summaries()
        policy = memory.settings.policy.name
    result: dict[str, Any] = {
        "namespace": ns,
        "policy": policy,
        "stages": {
            stage: {
                **{k: v for k, v in s.items() if k not in ("top", "bottom")},
                "top": [vars_of(c) for c in s["top"]],
                "bottom": [vars_of(c) for c in s["bottom"]],
            }
            for stage, s in stages.items()
        },
        "saved_state": [
            {k: (str(v) if k == "updated_at" else v) for k, v in row.items()} for row in saved
        ],
    }
    if json_out:
        print_json(result)
        return
    console = Console()
    console.print(f"Policy [bold]{policy}[/bold], namespace [bold]{ns}[/bold]")
    if not stages:
        console.print("No learned values yet: the policy has had no feedback in this namespace.")
    for stage, s in stages.items():
        console.print(
            f"\n[bold]{stage}[/bold]: {s['cases']} cases with values, {s['visits']} visits, "
            f"Q mean {s['mean_q']:.3f} (min {s['min_q']:.3f}, max {s['max_q']:.3f})"
        )
        for label in ("top", "bottom"):
            table = Table(title=f"{label} {len(s[label])}", title_justify="left")
            for column in ("id", "Q", "visits", "task"):
                table.add_column(column, justify="right" if column != "task" else "left")
            for c in s[label]:
                table.add_row(
                    str(c.case_id), f"{c.q_value:.3f}", str(c.visits), clip_line(c.task, 60)
                )
            console.print(table)
    for row in saved:
        console.print(
            f"Saved state [bold]{row['key']}[/bold]: version {row['version']}, "
            f"{row['bytes']:,} bytes, {row['meta'].get('updates', 0)} updates, "
            f"saved {row['updated_at']:%Y-%m-%d %H:%M:%S}"
        )


def vars_of(case: Any) -> dict[str, Any]:
    return {"id": case.case_id, "q": case.q_value, "visits": case.visits, "task": case.task}


@app.command("reset")
def reset(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget learned values (one namespace, or all with no --namespace) and saved networks."""
    scope = f"namespace {namespace!r}" if namespace is not None else "every namespace"
    if not yes:
        typer.confirm(f"Forget the learned case values of {scope}?", abort=True)
    with open_memory(ctx) as memory:
        rows = memory.case_stats.reset(namespace)
        if namespace is None:
            states = memory.policy_states.delete_all()
        else:  # learned state is kept per namespace; the default one inherits older state
            legacy = namespace == "default"
            states = memory.policy_states.delete_namespace(namespace, legacy=legacy)
    typer.echo(f"Removed {rows} learned values and {states} saved policy states ({scope}).")
