"""`memory-agent serve`: the case memory as an HTTP API (FastAPI on uvicorn)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from memory_agent.commands.common import state
from memory_agent.errors import DependencyMissingError

SERVE_INSTALL = "pip install 'memory-agent[serve]'"


def _load_server() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise DependencyMissingError(
            f"The HTTP API needs fastapi and uvicorn: {SERVE_INSTALL}"
        ) from exc


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8765).")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token clients must send (env MEMORY_AGENT_SERVE_TOKEN, which keeps it "
            "out of the process list)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes sharing the store (default 1).")
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Default namespace for requests that name none."),
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="Case-selection policy (default: settings).")
    ] = None,
) -> None:
    r"""Serve the memory as an HTTP API: retrieve, record, report outcomes, manage cases.

    The schema is at http://HOST:PORT/docs. Settings: MEMORY_AGENT_SERVE_* (host, port,
    token, workers, max_request_bytes). Needs `pip install 'memory-agent\[serve]'`.
    """
    _load_server()
    import uvicorn

    from memory_agent.http_api import (
        WORKER_SETTINGS_ENV,
        create_app,
        resolve_factory,
        settings_for_workers,
    )

    settings = state(ctx).settings({
        "serve.host": host, "serve.port": port, "serve.token": token, "serve.workers": workers,
        "namespace": namespace, "policy.name": policy,
    })  # fmt: skip
    conf = settings.serve
    resolve_factory(settings)  # a bad factory is a clear error before any worker starts
    if conf.token is None and conf.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"Warning: serving on {conf.host} without a token; anyone who can reach it can read "
            "and change the memory. Set --token or MEMORY_AGENT_SERVE_TOKEN.",
            err=True,
        )
    typer.echo(
        f"memory-agent API on http://{conf.host}:{conf.port} ({conf.workers} worker(s), "
        f"auth {'on' if conf.token else 'off'}); schema at /docs",
        err=True,
    )
    if conf.workers == 1:
        uvicorn.run(create_app(settings), host=conf.host, port=conf.port,
                    log_level=conf.log_level)  # fmt: skip
        return
    # Worker processes import the app by name; they read the settings (flags included) from
    # the environment they inherit.
    os.environ[WORKER_SETTINGS_ENV] = settings_for_workers(settings)
    uvicorn.run(
        "memory_agent.http_api:app_from_env", factory=True, host=conf.host, port=conf.port,
        workers=conf.workers, log_level=conf.log_level,
    )  # fmt: skip
