"""`memory-agent bench ...`: benchmarks that measure the store, the policies and the models."""

from __future__ import annotations

from memory_agent.commands import bench_store
from memory_agent.commands.bench_llm import llm as bench_llm
from memory_agent.commands.bench_load import load as bench_load
from memory_agent.commands.bench_policy import bench_policy
from memory_agent.commands.bench_serve import bench_serve
from memory_agent.commands.bench_skills import bench_skills
from memory_agent.commands.common import new_typer

app = new_typer("Benchmarks: each prints its figures (--json for machines) beside a baseline.")
app.command("policy")(bench_policy)
app.command("llm")(bench_llm)
app.command("store")(bench_store.store)
app.command("skills")(bench_skills)
app.command("load")(bench_load)
app.command("serve")(bench_serve)
