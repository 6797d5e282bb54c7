"""`memory-agent skills ...`: train, combine, list, show, delete, export and import LoRA skills
for the embedded local model (memory_agent.skills)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memory_agent.commands.common import new_typer, open_memory, print_json, print_table, state
from memory_agent.errors import InvalidInputError

if TYPE_CHECKING:
    from memory_agent.llm.local import LocalChatModel
    from memory_agent.settings import Settings
    from memory_agent.skills.library import SkillLibrary
    from memory_agent.store import CaseMemory
    from memory_agent.store.skills import SkillRecord

app = new_typer("LoRA skills for the local model: train from memory, combine, route, export.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _local_model(settings: Settings) -> LocalChatModel:
    from memory_agent.llm import LOCAL_MODELS
    from memory_agent.llm.local import LocalChatModel

    if settings.runtime.base_url is not None or settings.runtime.model not in LOCAL_MODELS:
        raise InvalidInputError(
            f"Skills are trained on and injected into the embedded local model "
            f"({', '.join(LOCAL_MODELS)}), not {settings.runtime.model!r} at an endpoint; unset "
            "MEMORY_AGENT_BASE_URL/--base-url and MEMORY_AGENT_MODEL."
        )
    return LocalChatModel(name=settings.runtime.model, threads=settings.runtime.local_threads)


def _library(memory: CaseMemory) -> SkillLibrary:
    from memory_agent.skills.library import SkillLibrary

    return SkillLibrary.of(memory)


def _summary(record: SkillRecord) -> dict[str, Any]:
    return {
        "skill": record.label,
        "kind": record.recipe.get("kind"),
        "base_model": record.base_model,
        "rank": record.rank,
        "scale": record.scale,
        "cases": len(record.cases.get("train", [])) + len(record.cases.get("held_out", [])),
        "held_out_exact": record.metrics.get("held_out_exact"),
        "bytes": record.file_bytes,
    }


@app.command("train")
def train(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Skill name (training it again adds a version).")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Cases from this namespace.")
    ] = None,
    filter_text: Annotated[
        str | None, typer.Option("--filter", help="Only cases whose task contains this text.")
    ] = None,
    family: Annotated[
        str | None,
        typer.Option("--family", help="Only cases of this eval family (meta 'family' or task id)."),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, max=100_000, help="Most training steps.")] = 200,
    rank: Annotated[int, typer.Option(min=1, max=256, help="LoRA rank.")] = 8,
    layers: Annotated[
        int, typer.Option(min=1, max=1000, help="Adapt the last N transformer blocks.")
    ] = 8,
    lr: Annotated[float, typer.Option(min=1e-7, max=1.0, help="Learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1, max=512)] = 8,
    max_length: Annotated[
        int, typer.Option(min=16, max=4096, help="Longest example in tokens (longer: skipped).")
    ] = 256,
    held_out: Annotated[
        float, typer.Option(min=0.01, max=0.9, help="Share of cases held out for stopping.")
    ] = 0.2,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between held-out checks.")] = 10,
    patience: Annotated[int, typer.Option(min=1, help="Checks without gain before stopping.")] = 3,
    scale: Annotated[float, typer.Option(help="Default injection scale.")] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[
        int | None, typer.Option(min=1, max=256, help="CPU threads (default: torch's).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train skill NAME from the memory's successful cases (task -> the plan that worked)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from memory_agent.skills.data import CaseFilter
    from memory_agent.skills.library import check_name
    from memory_agent.skills.train import TrainOptions

    check_name(name)
    if filter_text is not None and family is not None:
        raise InvalidInputError("Give --filter or --family, not both.")
    options = TrainOptions(
        steps=steps, rank=rank, layers=layers, learning_rate=lr, batch_size=batch_size,
        max_length=max_length, held_out=held_out, eval_every=eval_every, patience=patience,
        seed=seed, threads=threads,
    )  # fmt: skip
    settings = state(ctx).settings()
    llm = _local_model(settings)
    console = Console(stderr=True, quiet=json_out)
    with open_memory(ctx) as memory:
        chosen = CaseFilter(namespace or settings.namespace, filter_text, family)
        with Progress(
            TextColumn("[bold]training[/bold] {task.fields[name]}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[figures]}"), TimeRemainingColumn(),
            console=console, transient=False,
        ) as bar:  # fmt: skip
            task = bar.add_task("train", total=steps, name=name, figures="")

            def show(step: int, total: int, figures: dict[str, float]) -> None:
                text = " ".join(f"{k} {v:.3f}" for k, v in figures.items())
                bar.update(task, completed=step, figures=text)

            record = _library(memory).train(
                name, memory, llm, chosen, options, scale=scale, progress=show
            )
    if json_out:
        print_json(record.to_json())
        return
    m = record.metrics
    console.quiet = False
    Console().print(
        f"Stored skill [bold]{record.label}[/bold]: {m['train_examples']} training / "
        f"{m['held_out_examples']} held-out cases, {m['steps']} steps "
        f"({m['seconds_per_step']:.2f} s/step{', stopped early' if m['stopped_early'] else ''}), "
        f"held-out loss {m['held_out_loss_base']:.3f} -> {m['held_out_loss']:.3f}, "
        f"exact {m['held_out_exact_base']:.0%} -> {m['held_out_exact']:.0%}, "
        f"{record.file_bytes / 1e6:.1f} MB."
    )


@app.command("list")
def list_skills(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The newest version of every stored skill."""
    with open_memory(ctx) as memory:
        records = _library(memory).newest()
    if json_out:
        print_json([_summary(r) for r in records])
        return
    if not records:
        typer.echo("No skills yet; train one with `memory-agent skills train NAME`.")
        return
    rows = []
    for r in records:
        s = _summary(r)
        exact = s["held_out_exact"]
        rows.append([s["skill"], str(s["kind"]), str(s["rank"]), f"{s['scale']:g}",
                     str(s["cases"]), "—" if exact is None else f"{exact:.0%}",
                     f"{s['bytes'] / 1e6:.1f} MB", r.base_model])  # fmt: skip
    print_table(["skill", "kind", "rank", "scale", "cases", "held-out exact", "size", "base"], rows)


@app.command("show")
def show(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
) -> None:
    """Everything stored about a skill (JSON), with its versions."""
    with open_memory(ctx) as memory:
        library = _library(memory)
        record = library.get(spec)
        versions = [r.version for r in library.records.versions(record.name)]
    print_json({**record.to_json(), "versions": versions})


@app.command("delete")
def delete(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="NAME (every version) or NAME@VERSION.")],
) -> None:
    """Delete a skill (or one version) and its adapter file(s)."""
    from memory_agent.skills.library import SkillSpec

    chosen = SkillSpec.parse(spec)
    with open_memory(ctx) as memory:
        gone = _library(memory).delete(chosen.name, chosen.version)
    typer.echo(f"Deleted {', '.join(r.label for r in gone)}.")


@app.command("combine")
def combine(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new skill.")],
    terms: Annotated[
        list[str],
        typer.Option(
            "--from", help="SKILL:WEIGHT to add (repeatable); A:1 --from B:-1 is A minus B."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Store a weighted sum of skills (exact: the ranks add up) as a new skill."""
    from memory_agent.skills.base import base_of
    from memory_agent.skills.library import SkillSpec

    parsed = [SkillSpec.parse(t) for t in terms]
    pairs = [(str(SkillSpec(p.name, p.version)), 1.0 if p.scale is None else p.scale)
             for p in parsed]  # fmt: skip
    settings = state(ctx).settings()
    llm = _local_model(settings)
    with open_memory(ctx) as memory:
        record = _library(memory).combine(name, pairs, base_of(llm.name, llm.gguf))
    if json_out:
        print_json(record.to_json())
    else:
        typer.echo(f"Stored skill {record.label} (rank {record.rank}) = " + " + ".join(
            f"{t['weight']:g}·{t['skill']}" for t in record.recipe["terms"]))  # fmt: skip


@app.command("export")
def export(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    target: Annotated[Path, typer.Argument(help="File to write.")],
    gguf: Annotated[
        bool,
        typer.Option(
            "--gguf",
            help="Write a GGUF LoRA adapter for llama.cpp instead "
            "(at the skill's scale; llama.cpp's --lora FILE).",
        ),
    ] = False,  # fmt: skip
) -> None:
    """Write a skill to a file: for `skills import` elsewhere, or for llama.cpp (--gguf)."""
    from memory_agent.skills.base import base_of
    from memory_agent.skills.gguf_export import write_gguf_lora

    with open_memory(ctx) as memory:
        library = _library(memory)
        if not gguf:
            record = library.export(spec, target)
            typer.echo(f"Exported {record.label} to {target}.")
            return
        llm = _local_model(memory.settings)
        record = library.get(spec)
        weights = library.load(record, base_of(llm.name, llm.gguf))
        _tokenizer, model = llm.loaded()
        write_gguf_lora(weights, target, scale=record.scale, config=model.config,
                        name=record.label)  # fmt: skip
    typer.echo(f"Wrote GGUF LoRA adapter {target} for {record.base_model} (llama.cpp: --lora).")


@app.command("import")
def import_skill(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A file written by `skills export`.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Store under this name (default: its own).")
    ] = None,
    allow_other_base: Annotated[
        bool,
        typer.Option(
            "--allow-other-base",
            help="Store a skill made for another base model (it will not load with this one).",
        ),
    ] = False,  # fmt: skip
) -> None:
    """Store a skill from an export file as a new version."""
    from memory_agent.skills.base import base_of

    if not source.is_file():
        raise InvalidInputError(f"No file {source}.")
    settings = state(ctx).settings()
    llm = _local_model(settings)
    with open_memory(ctx) as memory:
        record = _library(memory).import_file(
            source, base_of(llm.name, llm.gguf), name=name, allow_other_base=allow_other_base
        )
    typer.echo(f"Imported {record.label} ({record.base_model}).")
