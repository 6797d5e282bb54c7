"""`memory-agent bench policy`: do the learned policies pick better cases than similarity?"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from memory_agent.commands.common import print_json, state
from memory_agent.commands.outputs import OutOption, bench_folder, write_json
from memory_agent.errors import InvalidInputError

PLOT_NAME = "policy_learning_curve.png"


def bench_policy(
    ctx: typer.Context,
    episodes: Annotated[int, typer.Option(min=50, help="Episodes per stream.")] = 500,
    seed: Annotated[int, typer.Option(help="First seed; the others follow it.")] = 0,
    seeds: Annotated[int, typer.Option(min=1, max=20, help="How many seeds.")] = 3,
    policies: Annotated[
        str,
        typer.Option(
            help="Comma-separated: similarity,value,neural,neural-no-emb,oracle; on request "
            "also the upper bounds bound (told the family of every task and case) and "
            "bound-task (of every task only), which are not policies."
        ),
    ] = "similarity,value,neural,neural-no-emb,oracle",
    bound_sigma: Annotated[
        float, typer.Option(help="Bounds only: scale of the Thompson draw (0: none).")
    ] = 0.2,
    bound_prior_mean: Annotated[
        float, typer.Option(help="Bounds only: prior mean of a case's value (weight 1).")
    ] = 0.4,
    bound_greedy_from: Annotated[
        int | None,
        typer.Option(help="Bounds only: from this episode on, pick by the posterior mean."),
    ] = None,
    out: OutOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(help=f"Write the learning-curve PNG here (default: --out/{PLOT_NAME})."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Similarity, value, neural (with its ablation) and an oracle on a simulated stream where
    only feedback tells helpful cases from look-alikes and twins.

    Reports per policy (cited vs flat credit): mean reward over the last 20% of episodes, its
    ratio to the oracle's with a 95% interval over seeds, the paired difference to
    similarity, cumulative regret, the time of select (50 candidates) and update, and a
    learning curve. The curve and summary.json go to --out (default HOME/bench/policy).

    The bounds (--policies bound,bound-task; evals/policy_bound.py) are told hidden families
    no policy sees: they say how much of the oracle a learner could reach on this stream.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from memory_agent.evals.policy_benchmark import (
        ALL_KINDS,
        plan_runs,
        plot_curves,
        run_benchmark,
    )
    from memory_agent.evals.policy_bound import BoundSettings
    from memory_agent.store.embedder import embedder_from_settings

    chosen = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in ALL_KINDS]
    if unknown or not chosen:
        raise InvalidInputError(
            f"Unknown policy {unknown[0] if unknown else ''!r} in --policies; choose from "
            f"{', '.join(ALL_KINDS)}."
        )
    bound = BoundSettings(
        sigma=bound_sigma, prior_mean=bound_prior_mean, greedy_from=bound_greedy_from
    )
    # Per-decision networks are tiny: one thread avoids fighting the other cores' work.
    torch.set_num_threads(1)
    settings = state(ctx).settings()
    folder = bench_folder(settings, out, "policy")
    seed_list = list(range(seed, seed + seeds))
    total = episodes * len(seed_list) * len(plan_runs(chosen))  # type: ignore[arg-type]
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=json_out,
    ) as progress:
        task = progress.add_task("Episodes", total=total)
        summary, results = run_benchmark(
            embedder_from_settings(settings),
            settings,
            episodes=episodes,
            seeds=seed_list,
            policies=chosen,  # type: ignore[arg-type]
            on_episode=lambda: progress.advance(task),
            bound=bound,
        )
    title = f"Case selection, {episodes} episodes, seeds {seed_list[0]}-{seed_list[-1]}"
    summary["plot"] = str(plot_curves(results, plot or folder / PLOT_NAME, title))
    summary["machine"] = f"{platform.machine()}, {platform.processor() or 'cpu'}, torch 1 thread"
    summary["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary["summary"] = str(write_json(folder / "summary.json", summary))
    if json_out:
        print_json(summary)
        return
    _print_table(summary)


def _print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench policy: {summary['episodes']} episodes, seeds {summary['seeds']}")
    for column in (
        "policy",
        "credit",
        "final reward",
        "vs oracle",
        "95% CI",
        "minus similarity [95% CI]",
        "regret",
        "select ms",
        "update ms",
    ):
        table.add_column(column, justify="left" if column in ("policy", "credit") else "right")

    def row(name: str, credit: str, f: dict[str, Any]) -> None:
        ratio = f.get("vs_oracle")
        table.add_row(
            name,
            credit,
            f"{f['final_reward']:.3f} ± {f['final_reward_spread']:.3f}",
            _ratio(ratio, f.get("vs_oracle_min"), len(summary["seeds"])),
            _range(f.get("vs_oracle_ci95"), percent=True),
            _difference(f.get("minus_similarity")),
            f"{f['regret']:.1f} ± {f['regret_spread']:.1f}",
            f"{f['select_ms']['median']:.2f}" if "select_ms" in f else "-",
            f"{f['update_ms']['median']:.2f}" if "update_ms" in f else "-",
        )

    for name, figures in summary["policies"].items():
        # A bound is told hidden families: its row must not read like a policy's.
        label = f"{name} ‡" if "told" in figures else name
        row(label, "cited" if "flat" in figures or "told" in figures else "-", figures)
        if "flat" in figures:
            row(name, "flat", figures["flat"])
    console = Console()
    console.print(table)
    console.print(
        "vs oracle: the mean final reward over the oracle's (worst seed in brackets); 95% CI: "
        "of the per-seed ratio, over seeds; minus similarity: paired by seed."
    )
    for name, figures in summary["policies"].items():
        if "told" in figures:
            console.print(
                f"{name} ‡: an upper bound, not a policy: told {figures['told']}, which no "
                "policy sees (evals/policy_bound.py)."
            )
    for name, figures in summary["policies"].items():
        if figures.get("cited_minus_flat"):
            console.print(
                f"{name}: cited minus flat credit {_difference(figures['cited_minus_flat'])}"
            )
    console.print(f"Learning curve: {summary['plot']}")


def _range(bounds: list[float] | None, *, percent: bool = False) -> str:
    if not bounds:
        return "-"
    low, high = bounds
    return f"[{low:.1%}, {high:.1%}]" if percent else f"[{low:+.3f}, {high:+.3f}]"


def _difference(d: dict[str, Any] | None) -> str:
    return "-" if not d else f"{d['mean']:+.3f} {_range(d.get('ci95'))}"


def _ratio(ratio: float | None, worst: float | None, seeds: int) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.1%}" + (f" ({worst:.1%})" if worst is not None and seeds > 1 else "")
