"""`memory-agent eval ...`: GAIA-format splits and the continual-learning stream."""

from __future__ import annotations

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
        typer.Option("--distractors", help="Add each family's look-alike twin to the stream."),
    ] = False,
    tasks: Annotated[int, typer.Option(help="Tasks in the training stream.")] = 9,
    worked: Annotated[
        int,
        typer.Option(help="Worked examples per family stored before the stream (0: cold start)."),
    ] = 1,
    holdout: Annotated[int, typer.Option(help="Held-out tasks (memory frozen).")] = 9,
    policies: Annotated[
        str | None,
        typer.Option(help="Comma-separated policies; `none` is memory off. Default: all."),
    ] = None,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    seeds: Annotated[int, typer.Option(help="Number of seeds (seed, seed+1, ...).")] = 1,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default HOME/evals/stream-TIME).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Also write the learning-curve PNG here.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the runs found in --out.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Continual learning on seeded reasoning-gym tasks: train, then a frozen held-out set.

    Each policy starts from its own memory holding only --worked solved examples per family,
    learns along the training stream, then answers new instances with memory frozen.
    `none` (memory off, no examples) is the baseline.
    """
    from memory_agent.evals.agent_solver import AgentSolver
    from memory_agent.evals.runner import default_run_name
    from memory_agent.evals.stream import (
        learning_curve,
        markdown_table,
        resolve_families,
        run_stream,
        summary,
    )

    names = resolve_families(_split_names(families), with_distractors=distractors)
    from memory_agent.policies.registry import POLICY_NAMES

    wanted = _split_names(policies) if policies else ["none", *POLICY_NAMES]
    chosen = [check_policy(p) for p in wanted]
    if not chosen:
        raise InvalidInputError("Give at least one policy (--policies none,similarity).")
    if tasks < 1 or holdout < 1 or seeds < 1 or worked < 0:
        raise InvalidInputError(
            "--tasks, --holdout and --seeds must be at least 1, --worked at least 0."
        )
    settings = _settings(ctx, model, base_url)
    folder = out or settings.home / "evals" / default_run_name("stream")
    if folder.exists() and any(folder.iterdir()) and not resume:
        raise InvalidInputError(f"{folder} is not empty; add --resume or choose another --out.")

    def factory(policy: str, home: Path) -> AgentSolver:
        # a fresh database per policy and seed, so no policy sees another's cases
        fresh = settings.replace(home=home, database_url=None)
        return AgentSolver(fresh, policy=policy)

    started = time.perf_counter()
    runs = run_stream(
        families=names, policies=chosen, tasks=tasks, holdout=holdout,
        seeds=list(range(seed, seed + seeds)), solver_factory=factory, out=folder,
        worked_examples=worked, resume=resume, progress=lambda text: typer.echo(text, err=True),
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    table = summary(runs)
    seed_list = list(range(seed, seed + seeds))
    title = (
        f"{'+'.join(names)}: {tasks} train / {holdout} held-out, {_model_name(settings)}, "
        f"{seeds} seed(s)"
    )
    png = learning_curve(runs, folder / "learning_curve.png", title=title)
    if plot is not None:
        learning_curve(runs, plot, title=title)
    report = markdown_table(table, seed_list)
    (folder / "report.md").write_text(f"# Stream {title}\n\n{report}", encoding="utf-8")
    result: dict[str, Any] = {
        "holdout": {p: row["holdout"] for p, row in table.items()},
        "holdout_std": {p: row["holdout_std"] for p, row in table.items()},
        "holdout_per_seed": {p: row["holdout_per_seed"] for p, row in table.items()},
        "train": {p: row["train"] for p, row in table.items()},
        "tasks": tasks,
        "holdout_tasks": holdout,
        "worked_examples_per_family": worked,
        "families": names,
        "seeds": seed_list,
        "model": _model_name(settings),
        "elapsed_s": round(elapsed, 1),
        "out": str(folder),
        "plot": str(png),
    }
    if as_json:
        print_json(result)
        return
    sys.stdout.write(report)
    typer.echo(f"Learning curve: {png}\nRuns: {folder}  ({elapsed:.0f} s)")


def _split_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
