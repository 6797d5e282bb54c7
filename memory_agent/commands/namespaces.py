"""`memory-agent memory namespace ...`: list namespaces, and give one an access token, rotate
it or remove it (store/namespace_tokens.py).

A token is printed once, alone on standard output (`TOKEN=$(memory-agent memory namespace
token set team-a)`); what to do with it goes to standard error. Rotating and removing present
the current token like any other command: MEMORY_AGENT_NAMESPACE_TOKEN (best: it stays out of
the process list) or `memory-agent --namespace-token ...`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from memory_agent.commands.common import new_typer, open_memory, print_json, print_table

app = new_typer("List namespaces; give one an access token, rotate it or remove it.")
token_app = new_typer(
    "A namespace's access token: once set, every operation on the namespace must present it."
)
app.add_typer(token_app, name="token")

NamespaceArg = Annotated[str, typer.Argument(help="The namespace.")]


@app.command("list")
def list_namespaces(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Every namespace, its live cases and whether it has an access token."""
    with open_memory(ctx) as memory:
        counts = memory.stats()["namespaces"]
        rows = [
            {"namespace": ns, "cases": int(counts.get(ns, 0)),
             "protected": memory.namespace_protected(ns)}
            for ns in memory.namespaces()
        ]  # fmt: skip
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("No namespaces yet; add a case or set a token to make one.")
        return
    print_table(
        ("namespace", "cases", "token"),
        ((str(r["namespace"]), str(r["cases"]), "yes" if r["protected"] else "") for r in rows),
    )


def _hand_over(token: str, namespace: str, what: str) -> None:
    typer.echo(token)
    typer.echo(
        f"{what} namespace {namespace!r}. This token is shown only now: keep it somewhere safe. "
        "Every operation on the namespace must present it, e.g. "
        "MEMORY_AGENT_NAMESPACE_TOKEN=<token> memory-agent memory list -n "
        f"{namespace} (or the X-Namespace-Token header over HTTP).",
        err=True,
    )


@token_app.command("set")
def set_token(ctx: typer.Context, namespace: NamespaceArg) -> None:
    """Give a namespace (created if need be) an access token and print it, once."""
    with open_memory(ctx) as memory:
        token = memory.set_namespace_token(namespace)
    _hand_over(token, namespace, "New access token of")


@token_app.command("rotate")
def rotate_token(ctx: typer.Context, namespace: NamespaceArg) -> None:
    """Replace a namespace's token (present the current one) and print the new one, once."""
    with open_memory(ctx) as memory:
        token = memory.rotate_namespace_token(namespace)
    _hand_over(token, namespace, "The old token no longer works. New access token of")


@token_app.command("remove")
def remove_token(ctx: typer.Context, namespace: NamespaceArg) -> None:
    """Make a namespace open again (present its current token)."""
    with open_memory(ctx) as memory:
        memory.remove_namespace_token(namespace)
    typer.echo(f"Namespace {namespace!r} has no access token any more: it is open to every caller.")
