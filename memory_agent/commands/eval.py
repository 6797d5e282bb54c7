"""`memory-agent eval ...`: GAIA-format splits and the continual-learning stream."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memory_agent.commands.common import clip_line, new_typer, print_json, state
from memory_agent.errors import InvalidInputError, RunFailedError

if TYPE_CHECKING:
    from memory_agent.settings import Settings

app = new_typer("Evaluate the agent: GAIA-format splits and the continual-learning stream.")

ModelOption = Annotated[
    str | None,
    typer.Option(help="Chat model (env MEMORY_AGENT_MODEL); default the embedded SmolLM2."),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(help="OpenAI-compatible endpoint for --model (env MEMORY_AGENT_BASE_URL)."),
]


def _settings(ctx: typer.Context, model: str | None, base_url: str | None) -> Settings:
    return state(ctx).settings({"runtime.model": model, "runtime.base_url": base_url})


def _model_name(settings: Settings) -> str:
    return settings.runtime.model


def check_policy(name: str) -> str:
    """`none` or a policy the registry knows; anything else is a clear error."""
    from memory_agent.policies.registry import POLICY_NAMES

    if name != "none" and name not in POLICY_NAMES:
        raise InvalidInputError(
            f"Unknown policy {name!r}; choose one of: none, {', '.join(POLICY_NAMES)}."
        )
    return name


@app.command("gaia")
def gaia(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="A GAIA split folder, or the dataset root with --split.")
    ],
    split: Annotated[str, typer.Option(help="Split under the dataset root.")] = "validation",
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    policy: Annotated[
        str | None, typer.Option(help="Case-selection policy (default: the settings' policy).")
    ] = None,
    no_memory: Annotated[
        bool, typer.Option("--no-memory", help="Memory off: the baseline.")
    ] = False,
    frozen_memory: Annotated[
        bool,
        typer.Option("--frozen-memory", help="Read memory but never write it (held-out)."),
    ] = False,
    namespace: Annotated[
        str | None, typer.Option(help="Memory namespace (default: the settings' namespace).")
    ] = None,
    pass_k: Annotated[int, typer.Option(help="Attempts per task; pass@k counts any.")] = 1,
    concurrency: Annotated[
        int, typer.Option(help="Parallel attempts (frozen or no memory only).")
    ] = 1,
    limit: Annotated[int | None, typer.Option(help="Run only the first N tasks.")] = None,
    level: Annotated[int | None, typer.Option(help="Run only tasks of this level.")] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Name of the run folder under HOME/evals/.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default HOME/evals/RUN-NAME).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue --run-name, skipping finished attempts.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Run a GAIA-format split and score it with GAIA's official rules.

    By default memory is on and continual: tasks run in order and each is learned before the
    next (so --concurrency is ignored). Results go to HOME/evals/RUN/results.jsonl (or
    --out/results.jsonl; one line per attempt), with report.md and submission.jsonl beside it.
    """
    from memory_agent.evals.agent_solver import AgentSolver
    from memory_agent.evals.gaia import load_split
    from memory_agent.evals.runner import Mode, default_run_name, run_with_progress

    if no_memory and frozen_memory:
        raise InvalidInputError("Choose one of --no-memory and --frozen-memory.")
    if resume and not (run_name or out):
        raise InvalidInputError("--resume needs the --run-name or --out of the run to continue.")
    settings = _settings(ctx, model, base_url)
    # Without --policy the run uses the agent's configured policy (MEMORY_AGENT_POLICY_NAME).
    chosen = "none" if no_memory else check_policy(policy or settings.policy.name)
    mode: Mode = "none" if chosen == "none" else "frozen" if frozen_memory else "continual"
    if mode == "continual" and concurrency > 1:
        typer.echo(
            "Continual mode runs one task at a time (each is learned before the next); "
            "--concurrency is ignored. Use --frozen-memory or --no-memory to run in parallel.",
            err=True,
        )
    data = load_split(directory, split).select(level=level, limit=limit)
    if data.problems:
        typer.echo(f"{len(data.problems)} malformed task(s) will be recorded as errors:", err=True)
        for problem in data.problems[:10]:
            typer.echo(f"  {problem.message}", err=True)
    name = run_name or (out.name if out else default_run_name(f"gaia-{split}"))
    run_dir = out or settings.home / "evals" / name
    solver = AgentSolver(settings, policy=chosen, namespace=namespace)
    try:
        solver.agent()  # a model or settings problem shows here, before any task runs
        outcome = run_with_progress(
            data, solver, run_dir, pass_k=pass_k, mode=mode, concurrency=concurrency,
            resume=resume, info={"policy": chosen, "model": _model_name(settings)},
            title=f"GAIA run {name}",
        )  # fmt: skip
    finally:
        solver.close()
    if as_json:
        print_json(
            {
                "run_dir": str(outcome.run_dir),
                "submission": str(outcome.submission),
                "scores": {k: asdict(v) for k, v in outcome.scores.items()},
            }
        )
    else:
        sys.stdout.write(outcome.report)
        typer.echo(f"Results: {run_dir / 'results.jsonl'}\nSubmission: {outcome.submission}")
    _fail_if_all_errored(outcome.records, run_dir)


def _fail_if_all_errored(records: list[dict[str, Any]], run_dir: Path) -> None:
    """Exit non-zero when there were attempts and every one of them ended with an error: the
    report would otherwise read like a run that merely scored 0."""
    attempts = [r for r in records if not r.get("malformed")]
    if attempts and all(r.get("error") for r in attempts):
        first = clip_line(str(attempts[0].get("error")), 300)
        raise RunFailedError(
            f"All {len(attempts)} attempt(s) ended with an error; the first: {first}. "
            f"Nothing was scored. Check the model (--model, --base-url) and "
            f"{run_dir / 'results.jsonl'}."
        )


@app.command("stream")
def stream(
    ctx: typer.Context,
    families: Annotated[
        str,
        typer.Option(
            help="Comma-separated families: count_bits, spell_backward, "
            "letter_counting, gcd and their twins."
        ),
    ] = "count_bits,spell_backward,letter_counting",
    distractors: Annotated[
        bool,
        typer.Option(
            "--distractors/--no-distractors",
            help="Add each family's look-alike twin (another procedure) to the stream.",
        ),
    ] = True,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="Mid-stream the count_bits, spell_backward and letter_counting questions "
            "change format (old one-liners give wrong answers; held-out tasks come from "
            "after the change), and a lenient judge stores some wrong answers as successes.",
        ),
    ] = False,
    drift_at: Annotated[
        float, typer.Option(help="With --drift: share of --tasks before the format change.")
    ] = 0.5,
    lenient: Annotated[
        float | None,
        typer.Option(
            help="Share of training tasks a lenient judge rates (accepts any answer of the "
            "right shape). Default 0.3 with --drift, else 0."
        ),
    ] = None,
    tasks: Annotated[int, typer.Option(help="Tasks in the training stream, per seed.")] = 120,
    worked: Annotated[
        int,
        typer.Option(help="Worked examples per family stored before the stream (0: cold start)."),
    ] = 1,
    holdout: Annotated[int, typer.Option(help="Held-out tasks per seed (memory frozen).")] = 60,
    policies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated policies; `none` is memory off, `static` the worked "
            "examples only (similarity, never written). Default: none, static and all."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    seeds: Annotated[int, typer.Option(help="Number of seeds (seed, seed+1, ...).")] = 3,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default HOME/evals/stream-TIME).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Also write the learning-curve PNG here.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run found in --out.")
    ] = False,
    budget_minutes: Annotated[
        float | None,
        typer.Option(
            help="Stop starting new tasks after this many minutes (learned state is saved); "
            "continue later with --resume."
        ),
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only",
            help="Run nothing: report the (seed, policy) runs of --out that have finished.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Continual learning on seeded reasoning-gym tasks: train, then a frozen held-out set.

    Per seed, every policy gets the same tasks. `none` (memory off) and `static` (worked
    examples only, similarity, memory never written) answer the held-out set; the others
    start from the worked examples, learn along the training stream from the judge's reward
    on their own runs, then answer the held-out set with memory frozen. Results are written
    task by task under --out, so --resume continues an interrupted run.
    """
    from memory_agent.evals.stream import (
        CONTROLS,
        StreamConfig,
        agent_policy,
        episodes,
        episodes_done,
        resolve_families,
        run_stream,
        seconds_left,
    )

    names = resolve_families(_split_names(families), with_distractors=distractors)
    from memory_agent.policies.registry import POLICY_NAMES

    wanted = _split_names(policies) if policies else [*CONTROLS, *POLICY_NAMES]
    chosen = [p if p in CONTROLS else check_policy(p) for p in wanted]
    if not chosen:
        raise InvalidInputError("Give at least one policy (--policies none,similarity).")
    if seeds < 1:
        raise InvalidInputError("--seeds must be at least 1.")
    if budget_minutes is not None and budget_minutes <= 0:
        raise InvalidInputError("--budget-minutes must be above 0.")
    config = StreamConfig(
        families=names, tasks=tasks, holdout=holdout, worked=worked, drift=drift,
        drift_at=drift_at, lenient=(0.3 if drift else 0.0) if lenient is None else lenient,
    )  # fmt: skip
    if drift and not config.drifted:
        raise InvalidInputError(
            "--drift needs a family with a drifted format: count_bits, spell_backward or "
            "letter_counting."
        )
    settings = _settings(ctx, model, base_url)
    seed_list = list(range(seed, seed + seeds))
    if report_only:
        from memory_agent.evals.stream import check_config, finished_runs

        if out is None or not (out / "stream.json").exists():
            raise InvalidInputError("--report-only needs the --out of an existing stream run.")
        check_config(out, config, resume=True)
        outcome = finished_runs(out, chosen, seed_list)
        _report_stream(outcome, config, chosen, seed_list, out, plot, settings, 0.0,
                       as_json=as_json)  # fmt: skip
        return
    folder = out or settings.home / "evals" / default_run_name_for_stream()
    if folder.exists() and any(folder.iterdir()) and not resume:
        raise InvalidInputError(f"{folder} is not empty; add --resume or choose another --out.")
    shared: dict[str, Any] = {}

    def factory(policy: str, home: Path) -> Any:
        from memory_agent.evals.agent_solver import AgentSolver
        from memory_agent.evals.stream import judge

        # a fresh database per policy and seed, so no policy sees another's cases; one chat
        # model and one embedder for all of them, so each loads once per process
        if not shared:
            from memory_agent.llm import make_chat_model
            from memory_agent.store.embedder import embedder_from_settings

            shared["llm"] = make_chat_model(settings)
            shared["embedder"] = embedder_from_settings(settings)
        fresh = settings.replace(home=home, database_url=None)
        return AgentSolver(fresh, policy=agent_policy(policy), llm=shared["llm"],
                           embedder=shared["embedder"], judge=judge)  # fmt: skip

    started = time.perf_counter()
    outcome = _run_with_bar(
        lambda hook: run_stream(
            config=config,
            policies=chosen,
            seeds=seed_list,
            solver_factory=factory,
            out=folder,
            resume=resume,
            deadline=seconds_left(budget_minutes),
            progress=hook,
        ),  # fmt: skip
        total=episodes(config, chosen, seed_list),
        done=episodes_done(folder, chosen, seed_list) if resume else 0,
    )
    elapsed = time.perf_counter() - started
    _report_stream(
        outcome, config, chosen, seed_list, folder, plot, settings, elapsed, as_json=as_json
    )


def default_run_name_for_stream() -> str:
    from memory_agent.evals.runner import default_run_name

    return default_run_name("stream")


def _run_with_bar(run: Any, *, total: int, done: int) -> Any:
    """Run the stream under a rich progress bar over all its agent runs (stderr)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
    ) as bar:  # fmt: skip
        bar_id = bar.add_task("stream", total=total, completed=done)
        tally: dict[str, list[int]] = {}

        def hook(label: str, record: dict[str, Any] | None) -> None:
            if record is None:
                bar.update(bar_id, description=label)
                return
            right, seen = tally.setdefault(label, [0, 0])
            tally[label] = [right + (record.get("score") is True), seen + 1]
            right, seen = tally[label]
            bar.update(bar_id, advance=1, description=f"{label} {right}/{seen} right")

        return run(hook)


def _report_stream(
    outcome: Any,
    config: Any,
    chosen: list[str],
    seed_list: list[int],
    folder: Path,
    plot: Path | None,
    settings: Settings,
    elapsed: float,
    *,
    as_json: bool,
) -> None:
    from memory_agent.evals.stream import learning_curve
    from memory_agent.evals.stream_report import json_figures, markdown_table, summary

    runs = outcome.runs
    table = summary(runs)
    drift = f", drift at {config.drift_index}, lenient {config.lenient:g}" if config.drift else ""
    title = (
        f"{'+'.join(config.families)}: {config.tasks} train / {config.holdout} held-out per "
        f"seed{drift}, {_model_name(settings)}, seeds {','.join(map(str, seed_list))}"
    )
    if not outcome.complete:
        every = [s for s in seed_list if all((s, p) in {(r.seed, r.policy) for r in runs}
                                             for p in chosen)]  # fmt: skip
        title += f" (finished for every policy: {','.join(map(str, every)) or 'none yet'})"
    png = learning_curve(runs, folder / "learning_curve.png", title=title) if runs else None
    if plot is not None and runs:
        learning_curve(runs, plot, title=title)
    report = markdown_table(table) if runs else "No (seed, policy) finished yet.\n"
    status = (
        ""
        if outcome.complete
        else "\nNot every (seed, policy) has finished; continue with --resume.\n"
    )
    (folder / "report.md").write_text(f"# Stream {title}\n\n{report}{status}", encoding="utf-8")
    finished = [[r.seed, r.policy] for r in runs]
    result: dict[str, Any] = {
        **json_figures(table),
        "complete": outcome.complete,
        "finished": finished,
        "tasks": config.tasks,
        "holdout_tasks": config.holdout,
        "worked_examples_per_family": config.worked,
        "families": config.families,
        "drift": config.drift,
        "drifted_families": config.drifted,
        "drift_index": config.drift_index,
        "lenient": config.lenient,
        "policies": chosen,
        "seeds": seed_list,
        "model": _model_name(settings),
        "elapsed_s": round(elapsed, 1),
        "out": str(folder),
        "plot": None if png is None else str(png),
    }
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json(result)
        return
    sys.stdout.write(report + status)
    if png is not None:
        typer.echo(f"Learning curve: {png}")
    typer.echo(f"Runs: {folder}  ({elapsed:.0f} s)")


def _split_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
