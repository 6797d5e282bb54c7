"""`memory-agent bench ...`: benchmarks that measure the store and the policies."""

from __future__ import annotations

from memory_agent.commands import bench_store
from memory_agent.commands.common import new_typer

app = new_typer("Benchmarks: each prints its figures (--json for machines) beside a baseline.")

app.command("store")(bench_store.store)
