"""Paired held-out difference between two `eval stream` runs of the same tasks.

`eval stream --report-only` pairs each policy with similarity inside one run folder; this pairs
any two policy folders, e.g. one policy with and without a setting, run into separate --out
folders on the same seeds (the task files must match). Same interval as the report: a
bootstrap over tasks, stratified by seed (memory_agent.evals.intervals.paired_bootstrap).

Usage: python scripts/paired_holdout.py RUN_A POLICY_A RUN_B POLICY_B SEED [SEED ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memory_agent.evals.intervals import paired_bootstrap


def held_out(run: Path, policy: str, seed: int) -> dict[str, bool]:
    """task id -> right or wrong, from a policy's held-out results of one seed."""
    path = run / f"seed-{seed}" / policy / "holdout" / "results.jsonl"
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["task_id"]: bool(row["score"]) for row in rows}


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    run_a, policy_a, run_b, policy_b = Path(argv[0]), argv[1], Path(argv[2]), argv[3]
    differences: dict[int, list[float]] = {}
    right_a = right_b = 0
    for seed in (int(s) for s in argv[4:]):
        a, b = held_out(run_a, policy_a, seed), held_out(run_b, policy_b, seed)
        if a.keys() != b.keys():
            print(f"seed {seed}: the two runs answered different held-out tasks", file=sys.stderr)
            return 2
        differences[seed] = [float(a[t]) - float(b[t]) for t in sorted(a)]
        right_a, right_b = right_a + sum(a.values()), right_b + sum(b.values())
    n = sum(len(d) for d in differences.values())
    mean, low, high = paired_bootstrap(differences)
    print(f"A {right_a / n:.1%}  B {right_b / n:.1%}  A - B {mean:+.3f} [{low:+.3f}, {high:+.3f}]"
          f"  over {n} tasks")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
