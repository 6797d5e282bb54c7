"""`memory-agent logs list|show`: the run log (runs, LLM and tool calls, retrieval, credit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from memory_agent.commands.common import clip_line, new_typer, open_memory, print_json, print_table

app = new_typer("Inspect logged runs: every LLM call, tool call, retrieval, reward and credit.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

if TYPE_CHECKING:
    from memory_agent.store.run_log import RunEvent


@app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, help="At most this many.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    from memory_agent.store.run_log import run_to_json

    with open_memory(ctx) as memory:
        rows = memory.run_log().recent(limit)
        # Runs of a protected namespace show only with its token (they hold its tasks).
        rows = [row for row in rows if memory.may_open(row.namespace)]
    if json_out:
        print_json([run_to_json(r) for r in rows])
        return
    if not rows:
        typer.echo("No runs logged yet; start one with `memory-agent run TASK`.")
        return
    print_table(
        ("run", "started", "status", "reward", "answer", "task"),
        (
            (
                row.id[:8],
                row.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                row.status,
                "" if row.reward is None else f"{row.reward:g}",
                clip_line(row.answer, 24),
                clip_line(row.task, 50),
            )
            for row in rows
        ),
    )


@app.command()
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    why: Annotated[
        bool,
        typer.Option(
            "--why",
            help="Explain each selection: why every shown case was shown (similarity, learned "
            "value and the outcomes it rests on, score, exploration) and what was passed over.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show one run and its events in order."""
    from memory_agent.store.run_log import run_to_json

    with open_memory(ctx) as memory:
        log = memory.run_log()
        row = log.get(run_id)
        memory.namespace_for(row.namespace)  # a protected namespace's run needs its token
        events = log.events(row.id)
        tasks = _case_tasks(memory, events, row.namespace) if why else {}
    record = run_to_json(row)
    if json_out:
        print_json({**record, "events": [e.to_json() for e in events]})
        return
    if why:
        typer.echo(f"run {row.id}: {clip_line(row.task, 70)} (policy {row.policy})")
        for line in explain(events, tasks):
            typer.echo(line)
        return
    for key, value in record.items():
        typer.echo(f"{key}: {value}")
    typer.echo("events:")
    for event in events:
        timing = "" if event.duration_s is None else f" {event.duration_s:.3f}s"
        tokens = ""
        if event.prompt_tokens is not None:
            tokens = f" tokens {event.prompt_tokens}+{event.completion_tokens}"
        detail = ", ".join(f"{k}={clip_line(str(v), 80)}" for k, v in event.data.items())
        typer.echo(f"  {event.seq:>3} {event.kind} {event.name or ''}{timing}{tokens} {detail}")


def _case_tasks(memory: Any, events: list[RunEvent], namespace: str) -> dict[int, str]:
    """The task text of every case an explanation names (cases deleted since: absent)."""
    ids = sorted(
        {
            int(c["case_id"])
            for e in events
            if e.kind == "selection"
            for c in e.data.get("considered", [])
        }
    )
    if not ids:
        return {}
    return {c.id: c.task for c in memory.get_many(ids, namespace=namespace)}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _reason(c: dict[str, Any], sim_rank: dict[int, int], total: int) -> str:
    parts = [f"similarity {c['similarity']:.3f} ({_ordinal(sim_rank[c['case_id']])} of {total})"]
    if c.get("value") is not None:
        evidence = float(c.get("evidence") or 0.0)
        if evidence > 0:
            parts.append(f"value {c['value']:.3f} from {evidence:.1f} outcomes on tasks like this")
        else:
            parts.append(f"value {c['value']:.3f}: the prior (no outcome on tasks like this yet)")
    parts.append(f"score {c['score']:.3f}")
    return ", ".join(parts)


def explain(events: list[RunEvent], tasks: dict[int, str], passed_over: int = 3) -> list[str]:
    """`logs show --why`: per selection, why each shown case was shown and what the most
    similar cases passed over were worth."""
    lines: list[str] = []
    selections = [e for e in events if e.kind == "selection"]
    if not selections:
        return ["No case selection in this run (memory off, or an empty store)."]
    for event in selections:
        data = event.data
        considered: list[dict[str, Any]] = list(data.get("considered", []))
        stage = data.get("stage", "?")
        if not considered:
            lines.append(
                f"{stage} ({event.name}): shown {data.get('shown', [])} with scores "
                f"{data.get('scores', [])}; no per-candidate explanation was logged (a run "
                "from before explanations were kept)."
            )
            continue
        by_similarity = sorted(considered, key=lambda c: -float(c["similarity"]))
        sim_rank = {int(c["case_id"]): i + 1 for i, c in enumerate(by_similarity)}
        by_id = {int(c["case_id"]): c for c in considered}
        shown = [int(i) for i in data.get("shown", []) if int(i) in by_id]
        lines.append(f"{stage} ({event.name}): {len(shown)} of {len(considered)} candidates shown")
        for position, case_id in enumerate(shown, start=1):
            c = by_id[case_id]
            pick = "exploration pick" if c.get("explored") else "best score"
            text = clip_line(tasks.get(case_id, "(deleted since)"), 100)
            lines.append(f"  #{position} case {case_id} [{pick}] {text}")
            lines.append(f"      {_reason(c, sim_rank, len(considered))}")
        skipped = [c for c in by_similarity if int(c["case_id"]) not in shown][:passed_over]
        if skipped:
            lines.append("  passed over (the most similar not shown):")
            for c in skipped:
                case_id = int(c["case_id"])
                text = clip_line(tasks.get(case_id, "(deleted since)"), 100)
                lines.append(f"    case {case_id} {text}")
                lines.append(f"      {_reason(c, sim_rank, len(considered))}")
    return lines
