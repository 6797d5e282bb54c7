"""`memory-agent bench load`: many processes on one store, killed at random moments."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import typer

from memory_agent.commands.common import print_json, state
from memory_agent.commands.outputs import OutOption, bench_folder, write_json
from memory_agent.errors import InvalidInputError, StoreConnectionError

Backend = Literal["sqlite", "postgresql", "postgres"]


def load(
    ctx: typer.Context,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 8,
    ops: Annotated[int, typer.Option(min=1, help="Operations per process.")] = 5000,
    kills: Annotated[
        int, typer.Option(min=0, help="SIGKILLs of a random worker during the run.")
    ] = 50,
    backend: Annotated[
        str,
        typer.Option(
            help="sqlite: a new file in --out. postgresql: a new database on the server of "
            "--database-url / MEMORY_AGENT_DATABASE_URL, dropped afterwards."
        ),
    ] = "sqlite",
    seed: Annotated[int, typer.Option(help="Seed of the operation mix and the kills.")] = 0,
    out: OutOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """N processes doing add/search/outcome/delete/import on one store, some SIGKILLed and
    restarted; then checks that nothing acknowledged was lost or duplicated, that every
    process's index matches the database and that the store opens clean.

    Exits 1 if an invariant fails. The figures also go to result.json in --out (default
    HOME/bench/load/<run>).
    """
    from memory_agent.evals.load_benchmark import (
        LoadConfig,
        fresh_postgres_database,
        run_load_benchmark,
    )

    if backend not in ("sqlite", "postgresql", "postgres"):
        raise InvalidInputError(f"--backend {backend!r}: choose sqlite or postgresql.")
    settings = state(ctx).settings()
    folder = bench_folder(settings, out, f"load/{backend}-{uuid.uuid4().hex[:8]}")
    config = LoadConfig(processes=processes, ops=ops, kills=kills, seed=seed)

    def say(message: str) -> None:
        typer.echo(message, err=True)

    say(f"Load: {processes} processes x {ops} operations, {kills} kills ({backend}); "
        f"journals in {folder}")  # fmt: skip
    if backend == "sqlite":
        database_file = folder / "load.db"
        for stale in (database_file, folder / "load.db-wal", folder / "load.db-shm"):
            stale.unlink(missing_ok=True)  # a run into a reused --out starts empty too
        url = f"sqlite:///{database_file}"
        result = run_load_benchmark(url, folder, config, settings, say)
    else:
        server = settings.database_url or ""
        if not server.startswith("postgresql"):
            raise InvalidInputError(
                "--backend postgresql needs a server: pass --database-url "
                "postgresql+psycopg://user:password@host:5432/postgres (or set "
                "MEMORY_AGENT_DATABASE_URL); the benchmark creates and drops its own database."
            )
        try:
            database = fresh_postgres_database(server)
            url = database.__enter__()
        except Exception as exc:  # noqa: BLE001 - any failure to create it is one message
            raise StoreConnectionError(
                f"Could not create a benchmark database on the server of --database-url: "
                f"{str(exc).splitlines()[0]}. The user needs CREATEDB."
            ) from exc
        try:
            result = run_load_benchmark(url, folder, config, settings, say)
        finally:
            database.__exit__(None, None, None)
    result["backend"] = "postgresql" if backend.startswith("postgres") else "sqlite"
    result["result"] = str(write_json(folder / "result.json", result))
    if json_out:
        print_json(result)
    else:
        _print(result)
    if not result["ok"]:
        raise typer.Exit(1)


def _print(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if key == "details":
            continue
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for name, inner in value.items():
                typer.echo(f"  {name}: {inner}")
        else:
            typer.echo(f"{key}: {value}")
    typer.echo(f"details: {result['result']}")
