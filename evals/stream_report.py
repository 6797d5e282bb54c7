"""The stream's figures: per-policy accuracy with 95% intervals, paired differences to the
controls, the markdown table and the plot.

Learning is reported against `static` (a fixed example bank) and `similarity` (memory
grows, selection by similarity), never against `none`: memory off lacks the worked
examples too, so a difference to it mixes "examples vs none" with learning.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory_agent.evals.extras import eval_extra
from memory_agent.evals.intervals import paired_bootstrap, wilson
from memory_agent.evals.stream import BASELINE, CONTROLS, PolicyRun


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, variance**0.5


def learned(policy: str) -> bool:
    """A policy whose selection learns (not a control and not the similarity baseline)."""
    return policy not in CONTROLS and policy != BASELINE


def paired(
    runs: Sequence[PolicyRun], policy: str, base: str, *, seed: int = 0
) -> dict[str, Any] | None:
    """`policy` minus `base` on the same held-out tasks: mean and a 95% interval (paired
    bootstrap over tasks within each seed); None when no seed has both."""
    by = {(r.policy, r.seed): r for r in runs}
    differences: dict[int, list[float]] = {}
    for (name, run_seed), run in by.items():
        other = by.get((base, run_seed))
        if name != policy or other is None:
            continue
        common = sorted(set(run.holdout_scores) & set(other.holdout_scores))
        differences[run_seed] = [
            float(run.holdout_scores[t]) - float(other.holdout_scores[t]) for t in common
        ]
    if not any(differences.values()):
        return None
    mean, low, high = paired_bootstrap(differences, seed=seed)
    return {
        "mean": mean,
        "ci": [low, high],
        "seeds": sorted(differences),
        "tasks": sum(len(v) for v in differences.values()),
    }


def summary(runs: Sequence[PolicyRun]) -> dict[str, dict[str, Any]]:
    """Per policy: held-out accuracy (mean over seeds, sample std, per seed), its Wilson
    95% interval over all held-out tasks, training accuracy, per-family accuracy, wrong
    successes stored, and the paired differences to `static` and `similarity`."""
    table: dict[str, dict[str, Any]] = {}
    for policy in dict.fromkeys(r.policy for r in runs):
        mine = [r for r in runs if r.policy == policy]
        mean, std = _mean_std([r.holdout_accuracy for r in mine])
        right = sum(sum(r.holdout_scores.values()) for r in mine)
        total = sum(len(r.holdout_scores) for r in mine)
        train = [ok for r in mine for ok in r.train_scores]
        families: dict[str, list[float]] = {}
        for run in mine:
            for family, accuracy in run.holdout_by_family.items():
                families.setdefault(family, []).append(accuracy)
        table[policy] = {
            "holdout": mean,
            "holdout_std": std,
            "holdout_ci": list(wilson(right, total)),
            "holdout_right": right,
            "holdout_n": total,
            "holdout_per_seed": {str(r.seed): r.holdout_accuracy for r in mine},
            "train": sum(train) / len(train) if train else None,
            "wrong_successes": sum(r.wrong_successes for r in mine) if train else None,
            "holdout_by_family": {f: sum(v) / len(v) for f, v in families.items()},
            "vs_static": paired(runs, policy, "static") if policy not in CONTROLS else None,
            "vs_similarity": paired(runs, policy, BASELINE) if learned(policy) else None,
        }
    return table


def json_figures(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `--json` keys derived from the table."""
    return {
        "holdout": {p: row["holdout"] for p, row in table.items()},
        "holdout_std": {p: row["holdout_std"] for p, row in table.items()},
        "holdout_ci": {p: row["holdout_ci"] for p, row in table.items()},
        "holdout_n": {p: row["holdout_n"] for p, row in table.items()},
        "holdout_per_seed": {p: row["holdout_per_seed"] for p, row in table.items()},
        "holdout_by_family": {p: row["holdout_by_family"] for p, row in table.items()},
        "train": {p: row["train"] for p, row in table.items()},
        "wrong_successes": {p: row["wrong_successes"] for p, row in table.items()},
        "paired_vs_similarity": {
            p: row["vs_similarity"] for p, row in table.items() if row["vs_similarity"]
        },
        "paired_vs_static": {p: row["vs_static"] for p, row in table.items() if row["vs_static"]},
    }


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _difference(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "—"
    low, high = cell["ci"]
    return f"{_points(cell['mean'])} [{_points(low)}, {_points(high)}]"


def markdown_table(table: dict[str, dict[str, Any]]) -> str:
    """One row per policy; each counts the seeds it finished (a stopped run reports some)."""
    families = sorted({f for row in table.values() for f in row["holdout_by_family"]})
    head = [
        "policy",
        "seeds",
        "held-out (mean ± std over seeds)",
        "95% CI (Wilson)",
        "− static (paired 95% CI, points)",
        "− similarity (paired 95% CI, points)",
        "training stream",
        "wrong successes stored",
    ]
    lines = [
        "| " + " | ".join(head + families) + " |",
        "| --- |" + " ---: |" * (len(head) - 1 + len(families)),
    ]
    for policy, row in table.items():
        low, high = row["holdout_ci"]
        train = "—" if row["train"] is None else f"{100 * row['train']:.1f}%"
        wrong = "—" if row["wrong_successes"] is None else str(row["wrong_successes"])
        cells = [
            policy,
            ",".join(row["holdout_per_seed"]),
            f"{100 * row['holdout']:.1f}% ± {100 * row['holdout_std']:.1f}",
            f"[{100 * low:.1f}, {100 * high:.1f}]",
            _difference(row["vs_static"]),
            _difference(row["vs_similarity"]),
            train,
            wrong,
            *(
                f"{100 * row['holdout_by_family'][f]:.0f}%"
                if f in row["holdout_by_family"]
                else "—"
                for f in families
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def learning_curve(runs: Sequence[PolicyRun], path: Path, *, title: str) -> Path:
    """Left: accuracy over the training stream per policy (moving window, mean over seeds)
    with the format change marked; right: held-out accuracy with Wilson 95% intervals."""
    with eval_extra("Plotting the learning curve"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

    figure, (curve_axes, bar_axes) = plt.subplots(
        1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [3, 2]}
    )
    policies = list(dict.fromkeys(r.policy for r in runs))
    drift = next((r.drift_index for r in runs if r.drift_index is not None), None)
    for index, policy in enumerate(policies):
        mine = [r for r in runs if r.policy == policy]
        length = min((len(r.train_scores) for r in mine), default=0)
        if not length:
            continue
        window = max(1, min(20, length // 6))
        curve = []
        for step in range(1, length + 1):
            start = max(0, step - window)
            per_seed = [sum(r.train_scores[start:step]) / (step - start) for r in mine]
            curve.append(sum(per_seed) / len(per_seed))
        curve_axes.plot(range(1, length + 1), curve, color=f"C{index}", label=policy)
    if drift is not None:
        curve_axes.axvline(drift + 0.5, color="grey", linestyle=":", label="format change")
    curve_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve_axes.set_xlabel("tasks seen in the training stream")
    curve_axes.set_ylabel("accuracy (moving window, mean over seeds)")
    curve_axes.set_ylim(-0.02, 1.02)
    curve_axes.legend(fontsize=8, loc="best")
    for index, policy in enumerate(policies):
        mine = [r for r in runs if r.policy == policy]
        right = sum(sum(r.holdout_scores.values()) for r in mine)
        total = sum(len(r.holdout_scores) for r in mine)
        low, high = wilson(right, total)
        value = right / total if total else 0.0
        bar_axes.bar(index, value, color=f"C{index}")
        error = [[max(0.0, value - low)], [max(0.0, high - value)]]
        bar_axes.errorbar(index, value, yerr=error, color="black", capsize=4)
    bar_axes.set_xticks(range(len(policies)), policies, rotation=30, fontsize=8)
    bar_axes.set_ylim(0, 1.02)
    bar_axes.set_ylabel("held-out accuracy (95% Wilson CI)")
    figure.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
