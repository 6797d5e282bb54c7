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
        ns = memory.namespace_for(namespace)  # checked, and its token if it has one
        stages = memory.case_stats.summary(ns, top=top)
        values = memory.case_stats.values(ns)
        live = memory.count(ns) if ns in memory.namespaces() else 0
        saved = memory.policy_states.summaries()
        policy = memory.settings.policy.name
        prior = memory.settings.policy.q_init
    result: dict[str, Any] = {
        "namespace": ns,
        "policy": policy,
        "live_cases": live,
        "stages": {
            stage: {
                **{k: v for k, v in s.items() if k not in ("top", "bottom")},
                # Cases never credited at this stage: their value is still the prior.
                "at_prior": live - int(s["cases"]),
                "prior": prior,
                "distribution": distribution(values.get(stage, [])),
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
        spread = result["stages"][stage]
        console.print(
            f"{spread['at_prior']} of {live} live cases never moved from the prior "
            f"({prior:g}): never credited at this stage."
        )
        q = spread["distribution"]["quantiles"]
        console.print("Values: " + ", ".join(f"{name} {v:.3f}" for name, v in q.items()))
        most = max((n for _, n in spread["distribution"]["histogram"]), default=0)
        for label, n in spread["distribution"]["histogram"]:
            bar = "#" * (round(30 * n / most) if most else 0)
            console.print(f"  {label:>13} {bar} {n}", highlight=False)
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


def distribution(values: list[float]) -> dict[str, Any]:
    """Quantiles of the learned values and their histogram in steps of 0.1 (empty bins left
    out)."""
    if not values:
        return {"quantiles": {}, "histogram": []}
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    names = ("min", "p10", "p25", "median", "p75", "p90", "max")
    quantiles = np.quantile(v, (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0))
    edges = np.round(np.arange(-1.0, 1.0001, 0.1), 1)
    counts, _ = np.histogram(np.clip(v, -1.0, 1.0), bins=edges)
    return {
        "quantiles": {n: round(float(q), 4) for n, q in zip(names, quantiles, strict=True)},
        "histogram": [
            [f"[{edges[i]:+.1f}, {edges[i + 1]:+.1f})", int(n)] for i, n in enumerate(counts) if n
        ],
    }


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
        if namespace is None:
            memory.check_store_wide("reset every namespace's learned values")
        else:
            memory.namespace_for(namespace)  # checked, and its token if it has one
        rows = memory.case_stats.reset(namespace)
        if namespace is None:
            states = memory.policy_states.delete_all()
        else:  # learned state is kept per namespace; the default one inherits older state
            legacy = namespace == "default"
            states = memory.policy_states.delete_namespace(namespace, legacy=legacy)
    typer.echo(f"Removed {rows} learned values and {states} saved policy states ({scope}).")
