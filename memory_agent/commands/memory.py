"""`memory-agent memory ...`: import, search, inspect and export the case store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memory_agent.commands.common import (
    clip_line,
    new_typer,
    open_memory,
    print_json,
    print_table,
    state,
)
from memory_agent.commands.namespaces import app as namespace_app
from memory_agent.errors import InvalidInputError
from memory_agent.gaps import LAST, MAX_RATE, MAX_RUNS, MIN_RUNS, SIMILAR, GapSettings, gap_report

app = new_typer("Store, search and inspect episodic cases.")
app.add_typer(namespace_app, name="namespace")

NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: from settings).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError as exc:
        raise InvalidInputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


@app.command("import")
def import_cases(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSONL file to import.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="jsonl (our export) or memento (a case bank).")
    ] = "jsonl",
    namespace: NamespaceOpt = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the good lines and report the bad ones.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Import cases from a JSONL file. All-or-nothing unless --skip-invalid."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if format not in ("jsonl", "memento"):
        raise InvalidInputError(f"--format must be jsonl or memento, not {format!r}.")
    total = _count_lines(file)
    with open_memory(ctx) as memory:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=json_out,
            transient=False,
        ) as progress:
            task = progress.add_task(f"Importing {file.name}", total=total)
            report = memory.import_file(
                file,
                fmt="memento" if format == "memento" else "jsonl",
                namespace=namespace,
                skip_invalid=skip_invalid,
                on_progress=lambda n: progress.advance(task, n),
            )
            progress.update(task, completed=total)
    result = {
        "added": report.added,
        "skipped_duplicates": report.skipped_duplicates,
        "invalid": [{"line": n, "error": msg} for n, msg in report.invalid],
        "evicted": report.evicted,
    }
    if json_out:
        print_json(result)
        return
    typer.echo(
        f"Imported {report.added} case(s); {report.skipped_duplicates} already stored; "
        f"{len(report.invalid)} invalid line(s) skipped; {report.evicted} evicted by the budget."
    )
    for number, message in report.invalid[:20]:
        typer.echo(f"  line {number}: {message}", err=True)


def _parse_filters(items: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(
                f"--filter takes KEY=VALUE, e.g. outcome=success; got {item!r}."
            )
        value: Any = raw
        if key in ("min_reward", "max_reward"):
            try:
                value = float(raw)
            except ValueError as exc:
                raise InvalidInputError(f"--filter {key} needs a number; got {raw!r}.") from exc
        elif raw in ("true", "false"):
            value = raw == "true"
        filters[key] = value
    return filters


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Task text to find similar cases for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="How many cases.")] = 5,
    namespace: NamespaceOpt = None,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="KEY=VALUE; outcome, source, min_reward, max_reward or a meta key. Repeatable.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Find the stored cases most similar to QUERY."""
    with open_memory(ctx) as memory:
        hits = memory.search(query, k, namespace=namespace, filters=_parse_filters(filter or []))
    if json_out:
        print_json([{"score": h.score, **h.case.to_json()} for h in hits])
        return
    if not hits:
        typer.echo("No cases found.")
        return
    print_table(
        ("id", "score", "outcome", "task", "plan"),
        (
            (str(h.case.id), f"{h.score:.3f}", h.case.outcome or "",
             clip_line(h.case.task, 60), clip_line(h.case.plan, 60))
            for h in hits
        ),
    )  # fmt: skip


@app.command("list")
def list_cases(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many cases.")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """List cases, newest first."""
    with open_memory(ctx) as memory:
        cases = memory.list_cases(namespace, limit=limit, offset=offset)
    if json_out:
        print_json([c.to_json() for c in cases])
        return
    print_table(
        ("id", "outcome", "reward", "source", "task"),
        (
            (str(c.id), c.outcome or "", "" if c.reward is None else f"{c.reward:g}", c.source,
             clip_line(c.task, 70))
            for c in cases
        ),
    )  # fmt: skip


@app.command()
def show(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case id.")],
    namespace: NamespaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one case of the namespace in full."""
    with open_memory(ctx) as memory:
        case = memory.get(case_id, namespace=namespace)
    record = case.to_json()
    if json_out:
        print_json(record)
        return
    for key, value in record.items():
        typer.echo(f"{key}: {value}")


@app.command()
def delete(
    ctx: typer.Context,
    case_id: Annotated[int, typer.Argument(help="Case id.")],
    namespace: NamespaceOpt = None,
) -> None:
    """Delete a case of the namespace (tombstoned: it leaves search but stays in the database)."""
    with open_memory(ctx) as memory:
        memory.delete(case_id, namespace=namespace)
    typer.echo(f"Deleted case {case_id}.")


@app.command()
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: all).")
    ] = None,
) -> None:
    """Export live cases as JSONL (re-importable with `memory import`)."""
    with open_memory(ctx) as memory:
        count = memory.export(file, namespace)
    typer.echo(f"Exported {count} case(s) to {file}.")


@app.command()
def stats(
    ctx: typer.Context,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: all).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts, sizes and the vector index of the store."""
    with open_memory(ctx) as memory:
        figures = memory.stats(namespace)
    if json_out:
        print_json(figures)
        return
    for key, value in figures.items():
        typer.echo(f"{key}: {value}")


@app.command()
def dedupe(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    threshold: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Cosine similarity that counts as duplicate.")
    ] = 0.95,
) -> None:
    """Merge near-duplicate cases, keeping their statistics."""
    with open_memory(ctx) as memory:
        merges = memory.dedupe(namespace, threshold=threshold)
    dropped = sum(len(m.dropped) for m in merges)
    typer.echo(f"Merged {dropped} case(s) into {len(merges)}.")


@app.command()
def budget(
    ctx: typer.Context,
    max_cases: Annotated[
        int | None, typer.Argument(help="Most cases to keep; omit to show the budget.")
    ] = None,
    namespace: NamespaceOpt = None,
    clear: Annotated[bool, typer.Option(help="Remove the namespace's own budget.")] = False,
) -> None:
    """Show or set a namespace's case budget; lowest-value cases are evicted past it."""
    with open_memory(ctx) as memory:
        if clear or max_cases is not None:
            evicted = memory.set_budget(namespace, None if clear else max_cases)
            typer.echo(f"Budget set; evicted {len(evicted)} case(s).")
        limit = memory.budget(namespace)
    typer.echo(f"Budget: {'none' if limit is None else limit}")


@app.command()
def reindex(
    ctx: typer.Context,
    new_codebook: Annotated[
        bool,
        typer.Option(
            "--new-codebook", help="Retrain the codebook first (otherwise: finish a pending one)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-encode every case with the pending codebook version.

    Search keeps working while this runs. Interrupt it at any time (Ctrl-C, or even a kill):
    each batch is committed, and running the command again carries on where it stopped.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    settings = state(ctx).settings({"store.reindex_in_background": False})
    from memory_agent.store import CaseMemory

    with CaseMemory(settings) as memory:
        if new_codebook:
            memory.new_codebook("manual")
        total = memory.reindex_remaining()
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=json_out or total == 0,
        ) as progress:
            task = progress.add_task("Re-encoding cases", total=total)

            def advance(n: int) -> None:
                progress.advance(task, n)

            if not memory.reindex(on_progress=advance, wait=False):
                typer.echo(
                    "Another process is re-encoding this store; waiting for it to finish...",
                    err=True,
                )
                memory.reindex(on_progress=advance)
        figures = memory.stats()
    result = {
        "reencoded": total,
        "codebook_version": figures["codebook_version"],
        "distortion": figures["distortion"],
    }
    if json_out:
        print_json(result)
        return
    if result["codebook_version"] is None:
        typer.echo(
            "Nothing to re-encode: this store keeps exact vectors until it has "
            f"{settings.store.codebook_min_cases} cases (MEMORY_AGENT_CODEBOOK_MIN_CASES)."
        )
    elif total == 0:
        typer.echo(f"Nothing to re-encode; codebook version {result['codebook_version']}.")
    else:
        typer.echo(f"Re-encoded {total} case(s); codebook version {result['codebook_version']}.")


@app.command()
def gaps(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    last: Annotated[
        int, typer.Option("--last", min=1, max=MAX_RUNS, help="Read the newest N rewarded runs.")
    ] = LAST,
    similar: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Cosine at which two tasks count as alike (MiniLM: 0.6 groups tasks of one "
            "template; lower it for short tasks that differ in a key word).",
        ),
    ] = SIMILAR,
    min_runs: Annotated[
        int, typer.Option("--min-runs", min=2, help="Fewest runs a gap is made of.")
    ] = MIN_RUNS,
    max_rate: Annotated[
        float,
        typer.Option("--max-rate", min=0.0, max=1.0, help="Highest success rate of a gap."),
    ] = MAX_RATE,
    json_out: JsonOpt = False,
) -> None:
    """Kinds of task that keep failing whatever the memory shows: add a worked example there."""
    # A policy can only choose among the cases the memory holds; where every one of them fails
    # (rewarded agent runs and outcomes reported to `retrieve`), the memory needs a new one.
    options = GapSettings(last=last, similar=similar, min_runs=min_runs, max_rate=max_rate)
    with open_memory(ctx) as memory:
        report = gap_report(memory, memory.namespace_for(namespace), options)
    if json_out:
        print_json(report)
        return
    ns, read, found = report["namespace"], report["runs_read"], report["gaps"]
    if not read:
        typer.echo(f"No rewarded runs in namespace {ns!r} yet: nothing to judge the memory by.")
        return
    if not found:
        typer.echo(
            f"No gaps: among the {read} newest rewarded runs, no group of at least "
            f"{min_runs} alike tasks (cosine >= {similar:g}) succeeded at most "
            f"{max_rate:.0%} of the time."
        )
        return
    typer.echo(f"{len(found)} gap(s) among the {read} newest rewarded runs:")
    for n, gap in enumerate(found, 1):
        typer.echo(
            f"\n{n}. {gap['successes']} of {gap['runs']} runs succeeded (mean reward "
            f"{gap['mean_reward']:.2f}) on tasks like: {clip_line(gap['task'], 90)}"
        )
        if gap["nothing_shown"]:
            typer.echo(f"   {gap['nothing_shown']} of them were shown no case at all.")
        for c in gap["cases"][:5]:
            task = gap["case_tasks"][str(c["case_id"])] or "(deleted)"
            typer.echo(
                f"   case {c['case_id']}: shown in {c['shown']}, {c['succeeded']} succeeded  "
                f"{clip_line(task, 60)}"
            )
        newest = gap["run_ids"][0][:8]
        typer.echo(f"   newest run: {newest} (memory-agent logs show {newest} --why)")
    typer.echo(
        "\nThe cases shown there fail most of the time, and a policy can only choose among\n"
        "the cases the memory holds: store a worked example for tasks like these\n"
        "(memory-agent memory import FILE, or MemoryAgent(...).memory.add)."
    )
