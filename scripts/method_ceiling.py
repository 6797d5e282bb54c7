"""How far case selection alone can lift a small model on an `eval stream` run: the methods
the model wrote per family, how often each came out right, and the ceiling they imply.

Case selection decides what the planner sees; the planner still has to type the one-liner.
For each family this reads every answer of the given runs (training and held-out, every
policy), masks the literals of the line the model ran (`policies/method.py`, so
`'orchid'[::-1]` and `'quartz'[::-1]` are one method) and counts how often each method gave
the right answer. A selector that always led the model to its family's best method would
still score only that method's rate: the model's slips (a mistyped word, a wrong letter) stay.
The ceiling is the held-out mean of the best rate per family (families weighted by their
held-out tasks), with a 95% bootstrap interval (each family's outcomes resampled), printed
beside each policy's held-out score from the same runs.

Usage: python scripts/method_ceiling.py RUN_DIR [RUN_DIR ...] [--min-uses N]
(RUN_DIR: an --out folder of eval stream, or any folder above one; symlinks are followed
and each results file is read once)
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from memory_agent.policies.method import plan_method

NO_CODE = "(no code ran)"
PHASES = ("train", "holdout")


def results_files(roots: list[Path]) -> list[tuple[int, str, str, Path]]:
    """(root index, policy, phase, path) of every results.jsonl under `roots`, each real
    file once.
    A policy's home is `<out>/seed-N/<policy>/`, its phases the folders inside it."""
    seen: set[str] = set()
    found = []
    for index, root in enumerate(roots):
        for folder, _, files in os.walk(root, followlinks=True):
            path = Path(folder)
            if "results.jsonl" not in files or path.name not in PHASES:
                continue
            real = os.path.realpath(path / "results.jsonl")
            if real in seen:
                continue
            seen.add(real)
            found.append((index, path.parent.name, path.name, path / "results.jsonl"))
    return sorted(found)


def ran_code(trace: str) -> str | None:
    """The last line of Python the sandbox ran in this attempt (a retry replaces the first)."""
    code = None
    for line in trace.splitlines():
        if not line.startswith("{"):
            continue
        step = json.loads(line)
        if step.get("type") == "tool" and step.get("tool") == "python":
            code = str((step.get("args") or {}).get("code") or "")
    return code


def family_of(task_id: str) -> str:
    return task_id.rsplit("-", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--min-uses", type=int, default=10,
                        help="a method counts for the ceiling once written this often")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args()

    outcomes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    # The same per run folder and policy: slips depend on the cases shown, so one policy's
    # rate with a method can beat the pooled one (the optimistic ceiling takes the best).
    by_run: dict[tuple[str, str, int, str], list[bool]] = defaultdict(list)
    holdout: dict[str, list[bool]] = defaultdict(list)
    holdout_families: Counter[str] = Counter()
    for index, policy, phase, path in results_files(args.runs):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            family = family_of(row["task_id"])
            right = bool(row["score"])
            if phase == "holdout":
                holdout[policy].append(right)
                if policy != "none":
                    holdout_families[family] += 1
            if policy == "none":
                continue  # no example shown: not a method a selector could lead to
            code = ran_code(row.get("reasoning_trace") or "")
            method = plan_method(code) if code else None
            outcomes[(family, method or NO_CODE)].append(right)
            by_run[(family, method or NO_CODE, index, policy)].append(right)
    if not holdout_families:
        raise SystemExit("No held-out results under the given folders (see --help).")

    print("| family | method (literals masked) | written | right |")
    print("| --- | --- | ---: | ---: |")
    best: dict[str, list[bool]] = {}
    for (family, method), got in sorted(outcomes.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        if len(got) < args.min_uses:
            continue
        rate = float(np.mean(got))
        print(f"| {family} | `{method[:60]}` | {len(got)} | {100 * rate:.1f}% |")
        if method != NO_CODE and (family not in best or rate > np.mean(best[family])):
            best[family] = got

    families = sorted(holdout_families)
    weights = np.asarray([holdout_families[f] for f in families], dtype=np.float64)
    weights /= weights.sum()
    rates = np.asarray([np.mean(best.get(f, [False])) for f in families])
    rng = np.random.default_rng(args.seed)
    draws = []
    for _ in range(2000):
        resampled = [np.mean(rng.choice(best.get(f, [False]), size=len(best.get(f, [False]))))
                     for f in families]  # fmt: skip
        draws.append(float(np.dot(weights, resampled)))
    low, high = np.percentile(draws, [2.5, 97.5])
    print()
    print("Best method per family: " + ", ".join(
        f"{f} {100 * r:.1f}%" for f, r in zip(families, rates, strict=True)))  # fmt: skip
    print(f"Ceiling of selection (held-out mix): {100 * float(np.dot(weights, rates)):.1f}% "
          f"[{100 * low:.1f}, {100 * high:.1f}]")  # fmt: skip
    optimistic = {}
    for family in families:
        runs = [got for (f, m, _, _), got in by_run.items()
                if f == family and m != NO_CODE and len(got) >= args.min_uses]  # fmt: skip
        optimistic[family] = max((float(np.mean(g)) for g in runs), default=0.0)
    print("Best method per family, best run folder and policy: " + ", ".join(
        f"{f} {100 * optimistic[f]:.1f}%" for f in families))  # fmt: skip
    ceiling = float(np.dot(weights, [optimistic[f] for f in families]))
    print(f"Optimistic ceiling (each family at its best run's rate): {100 * ceiling:.1f}%")
    for policy, got in sorted(holdout.items()):
        print(f"Held-out {policy}: {100 * float(np.mean(got)):.1f}% of {len(got)} tasks")


if __name__ == "__main__":
    main()
