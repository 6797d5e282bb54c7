"""`memory-agent bench serve`: the HTTP API's retrieves and adds under concurrent clients."""

from __future__ import annotations

from typing import Annotated

import typer

from memory_agent.commands.common import print_json, state
from memory_agent.commands.outputs import OutOption, bench_folder, write_json


def bench_serve(
    ctx: typer.Context,
    clients: Annotated[int, typer.Option(min=1, max=1024, help="Concurrent clients.")] = 16,
    cases: Annotated[int, typer.Option(min=1, help="Cases in the served store.")] = 100_000,
    requests: Annotated[
        int, typer.Option(min=10, help="Requests per phase (adds: at most 2,000).")
    ] = 2000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server worker processes.")] = 1,
    out: OutOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Requests/s and p50/p95 latency of retrieve (text, or the vector given) and add, with
    the embedder's own batch throughput measured in the same run.

    The store (HOME/bench/serve/store-CASES) is built on the first run and reused. The
    figures also go to serve-CASES.json in --out (default HOME/bench/serve).
    """
    from memory_agent.commands.serve import _load_server
    from memory_agent.serve_bench import run_serve_benchmark

    _load_server()
    settings = state(ctx).settings()
    folder = bench_folder(settings, out, "serve")

    def say(message: str) -> None:
        typer.echo(message, err=True)  # stderr: --json output on stdout stays clean

    result = run_serve_benchmark(settings, cases=cases, clients=clients, requests=requests,
                                 workers=workers, folder=folder, say=say)  # fmt: skip
    result["result"] = str(write_json(folder / f"serve-{cases}.json", result))
    if json_out:
        print_json(result)
        return
    emb = result["embedder"]
    typer.echo(f"embedder {emb['model']}: {emb['texts_per_s']} texts/s in batches of "
               f"{emb['batch_size']} ({emb['one_at_a_time_per_s']}/s one at a time)")  # fmt: skip
    for phase in ("retrieve_text", "retrieve_vector", "add"):
        r = result[phase]
        typer.echo(f"{phase}: {r['per_s']} req/s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms "
                   f"({r['requests']} requests, {r['errors']} errors)")  # fmt: skip
    typer.echo(f"goals: {result['goals']}")
