"""`memory-agent bench skills`: held-out accuracy with and without LoRA skills (see
memory_agent/skills/bench.py for the protocol). Resumable: run it again to continue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from memory_agent.errors import InvalidInputError


def _names(text: str) -> tuple[str, ...]:
    from memory_agent.evals.stream import FAMILIES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise InvalidInputError(f"Unknown families {unknown}; choose from {', '.join(FAMILIES)}.")
    return names


def bench_skills(
    out: Annotated[Path, typer.Option(help="Results folder (reused to resume).")] = Path(
        "bench-skills"
    ),
    targets: Annotated[str, typer.Option(help="Families a skill is trained for.")] = "gcd,lcm",
    others: Annotated[
        str, typer.Option(help="Unrelated families (interference).")
    ] = "count_bits,spell_backward",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    train: Annotated[int, typer.Option(min=2, help="Solved tasks per family in memory.")] = 60,
    holdout: Annotated[int, typer.Option(min=1, help="Held-out tasks per family.")] = 40,
    steps: Annotated[int, typer.Option(min=1, help="Most training steps per skill.")] = 150,
    rank: Annotated[int, typer.Option(min=1)] = 8,
    layers: Annotated[int, typer.Option(min=1, help="Adapted (last) transformer blocks.")] = 8,
    threads: Annotated[int, typer.Option(min=1)] = 2,
    budget_minutes: Annotated[
        float, typer.Option(help="Stop after this long (resume later).")
    ] = 18.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Held-out accuracy: no memory / memory / skill / memory+skill on the target families,
    and the skills' interference on unrelated families with the router on and off."""
    from memory_agent.skills.bench import SkillBench, SkillBenchConfig, markdown

    config = SkillBenchConfig(
        targets=_names(targets), others=_names(others),
        seeds=tuple(int(s) for s in seeds.split(",") if s.strip()), train=train,
        holdout=holdout, steps=steps, rank=rank, layers=layers, threads=threads,
    )  # fmt: skip
    bench = SkillBench(config, out, say=lambda text: typer.echo(text, err=True))
    finished = bench.run(budget_minutes * 60)
    if not bench.results.exists():
        return
    summary = {**bench.summary(), "finished": finished}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(markdown(summary))
