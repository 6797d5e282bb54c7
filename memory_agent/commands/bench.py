"""`memory-agent bench ...`: benchmarks that measure the store and the policies."""

from __future__ import annotations

from memory_agent.commands.common import new_typer

app = new_typer("Benchmarks: each prints its figures (--json for machines) beside a baseline.")

from memory_agent.commands.bench_llm import llm as _bench_llm  # noqa: E402

app.command("llm")(_bench_llm)
