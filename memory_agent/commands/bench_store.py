"""`memory-agent bench store`: the compressed case store beside exact FAISS and re-embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memory_agent.commands.common import print_json, state
from memory_agent.commands.outputs import OutOption, bench_folder, write_json
from memory_agent.errors import InvalidInputError
from memory_agent.evals.extras import eval_extra


def _say(enabled: bool) -> Any:
    def say(message: str) -> None:
        if enabled:
            typer.echo(message, err=True)

    return say


def store(
    ctx: typer.Context,
    cases: Annotated[int, typer.Option("--cases", min=1, help="Cases to store.")] = 100_000,
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Seeded clustered vectors (the default).")
    ] = False,
    text: Annotated[
        Path | None,
        typer.Option("--text", help="Text file, one task per line, embedded with the embedder."),
    ] = None,
    queries: Annotated[int, typer.Option(min=1, help="Held-out queries.")] = 500,
    baseline_cases: Annotated[
        int,
        typer.Option(help="Cases for the re-embedding baseline (0: skip it; needs --text)."),
    ] = 10_000,
    baseline_queries: Annotated[int, typer.Option(min=1)] = 3,
    frontier: Annotated[
        Path | None,
        typer.Option(help="Also measure the recall-vs-bytes frontier; write it to this PNG."),
    ] = None,
    collapse: Annotated[
        Path | None,
        typer.Option(help="Run the codebook-collapse stream instead; write its PNG here."),
    ] = None,
    grow_in: Annotated[
        int,
        typer.Option(
            min=1,
            help="Add the cases in this many calls, as a growing store would (codebook "
            "retrains re-encoded between calls); 1: one bulk add.",
        ),
    ] = 1,
    sizes: Annotated[
        str | None,
        typer.Option(
            help="Measure the store at each of these sizes (e.g. 1k,10k,100k: the first n "
            "cases, the same held-out queries) instead of --cases.",
        ),
    ] = None,
    curve: Annotated[
        Path | None,
        typer.Option(help="With --sizes: write the recall and bytes per size to this PNG."),
    ] = None,
    out: OutOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Bytes per case, shortlist recall, latency, add rate and open time of the store.

    The figures also go to result.json in --out (default HOME/bench/store).
    """
    import faiss

    from memory_agent.evals.store_benchmark import index_frontier, run_store_benchmark

    if synthetic and text is not None:
        raise InvalidInputError("Pick one of --synthetic and --text FILE.")
    if text is not None and not text.is_file():
        raise InvalidInputError(f"--text {text}: no such file (one task per line).")
    # One query at a time is what an agent does; FAISS's threads only add contention.
    faiss.omp_set_num_threads(1)
    settings = state(ctx).settings({"store.reindex_in_background": False})
    folder = bench_folder(settings, out, "store")
    # Progress goes to stderr, so --json output on stdout stays clean.
    say = _say(True)
    if collapse is not None:
        result: dict[str, Any] = _collapse(collapse)
    else:
        result = run_store_benchmark(
            cases=cases,
            text=text,
            queries=queries,
            settings=settings,
            baseline_cases=baseline_cases if text is not None else 0,
            baseline_queries=baseline_queries,
            say=say,
            grow_in=grow_in,
            sizes=_parse_sizes(sizes) if sizes else None,
        )
        if curve is not None and "sizes" in result:
            _plot_sizes(result, curve)
        if frontier is not None:
            say("Frontier of index kinds:")
            rows = index_frontier(cases, text, min(queries, 300), settings, say)
            _plot_frontier(rows, frontier, result["workload"])
            result["frontier"] = rows
    result["result"] = str(write_json(folder / "result.json", result))
    if json_out:
        print_json(result)
        return
    _print(result)


def _parse_sizes(text: str) -> list[int]:
    """ "1k,10k,100k" -> [1000, 10000, 100000]."""
    out = []
    for part in text.split(","):
        word = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(word[-1:], 1)
        number = word[:-1] if scale > 1 else word
        try:
            value = int(float(number) * scale)
        except ValueError:
            value = 0
        if value < 1:
            raise InvalidInputError(
                f"--sizes {text!r}: {part!r} is not a case count; write e.g. 1k,10k,100k."
            )
        out.append(value)
    return out


def _plot_sizes(result: dict[str, Any], path: Path) -> None:
    with eval_extra("Plotting the store benchmark"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    rows = result["sizes"]
    cases = [row["cases"] for row in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    top.plot(cases, [r["shortlist_recall"] for r in rows], marker="o",
             label="policy shortlist: exact top-10 in top-50")  # fmt: skip
    top.plot(cases, [r["search_recall_at_10"] for r in rows], marker="s",
             label="search(k=10): exact top-10")  # fmt: skip
    top.axhline(0.95, color="tab:red", linewidth=0.8, linestyle="--", label="0.95")
    top.set_ylabel("recall vs exact search")
    top.set_ylim(min(0.9, *(r["search_recall_at_10"] for r in rows)) - 0.02, 1.005)
    top.legend(fontsize=8, loc="lower left")
    bottom.plot(cases, [r["ram_bytes_per_case"] for r in rows], marker="o", label="RAM")
    bottom.plot(cases, [r["disk_bytes_per_case"] for r in rows], marker="s", label="disk")
    bottom.plot(cases, [r["database_file_bytes_per_case"] for r in rows], marker="^",
                linestyle=":", label="whole SQLite file (with case text)")  # fmt: skip
    bottom.set_yscale("log")
    bottom.set_ylabel("bytes per case")
    bottom.set_xlabel("cases in the store")
    bottom.set_xscale("log")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.set_title(f"Store at each size — {result['workload']}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for name, inner in value.items():
                typer.echo(f"  {name}: {inner}")
        elif isinstance(value, list):
            typer.echo(f"{key}:")
            for row in value:
                typer.echo(f"  {row}")
        else:
            typer.echo(f"{key}: {value}")


def _plot_frontier(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import numpy as np

    with eval_extra("Plotting the store benchmark"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    recalls = [row["shortlist_recall"] for row in rows]
    gap = (max(recalls) - min(recalls) + 1e-9) * 0.045
    # Label heights: the kinds' recalls, pushed apart where kinds sit close together.
    heights: dict[int, float] = {}
    last = -np.inf
    for number in sorted(range(len(rows)), key=lambda i: recalls[i]):
        heights[number] = last = max(recalls[number], last + gap)
    for number, row in enumerate(rows):
        rest, ram = row["bytes_per_case"], row["ram_bytes_per_case"]
        recall = row["shortlist_recall"]
        # One line per kind: at rest (filled) to in memory (hollow), at its recall.
        ax.plot([rest, ram], [recall, recall], color="tab:gray", linewidth=0.8, zorder=1)
        ax.scatter([rest], [recall], color="tab:blue", zorder=2,
                   label="at rest (database)" if number == 0 else None)  # fmt: skip
        ax.scatter([ram], [recall], facecolors="none", edgecolors="tab:orange", zorder=2,
                   label="in memory (index)" if number == 0 else None)  # fmt: skip
        ax.annotate(row["kind"], (max(rest, ram), recall), (max(rest, ram) * 1.25,
                    heights[number]), fontsize=7, va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5})  # fmt: skip
    ax.axvline(32, color="tab:red", linewidth=0.8, linestyle="--", label="32 B/case")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per case (codes, ids and trained parameters)")
    ax.set_ylabel("shortlist recall (exact top-10 in top-50)")
    ax.set_title(f"Recall vs bytes — {title}", fontsize=9)
    ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _collapse(path: Path) -> dict[str, Any]:
    from memory_agent.evals.codebook_collapse import collapse_curves

    with eval_extra("Plotting the codebook collapse"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    curves = collapse_curves()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for curve in curves:
        label = "store with upkeep (default)" if curve.upkeep else "codebook_upkeep off"
        top.plot(curve.seen, curve.shortlist_recall, marker="o", label=label)
        bottom.plot(curve.seen, curve.dead, marker="o", label=label)
    top.set_ylabel("shortlist recall (codes alone)")
    bottom.set_ylabel("dead codewords")
    bottom.set_xlabel("cases streamed (distribution shifts after the 2nd step)")
    top.legend()
    top.grid(True, alpha=0.3)
    bottom.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {
        curve_name: {
            "seen": c.seen,
            "dead_codewords": c.dead,
            "shortlist_recall": c.shortlist_recall,
            "codebook_version": c.versions,
        }
        for curve_name, c in zip(("without_upkeep", "with_upkeep"), curves, strict=True)
    }
