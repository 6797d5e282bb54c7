"""Replay held-out tasks of an `eval stream` run with other shown cases, on the real model.

A question selection cannot answer by itself: would another choice of cases have helped, and
does the memory hold one? This takes one family's held-out tasks of a policy's run, shows the
model (the `code` prompt the agent builds) either the cases the run showed or the cases named
by id from any run's memory, runs the one-liner it writes in a bare evaluator, and scores the
output with the product's scorer.

Usage:
  python scripts/probe_examples.py RUN_HOME FAMILY [--cases DB --ids 3,49,55] [--none]
(RUN_HOME: `<out>/seed-N/<policy>` of eval stream; without --ids the run's own shown cases;
--none: no case at all)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from memory_agent.llm.local import LocalChatModel
from memory_agent.runtime.prompts import ShownCase, code_messages, extract_code
from memory_agent.scoring import question_scorer

# What the one-liners of the stream's families call; nothing else is reachable.
SAFE_BUILTINS = {"sorted": sorted, "bin": bin, "sum": sum, "len": len, "str": str, "int": int}


def load_cases(db: Path) -> dict[int, ShownCase]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, task, plan, answer, outcome FROM cases").fetchall()
    return {int(i): ShownCase(int(i), t, p, a, o) for i, t, p, a, o in rows}


def run_line(code: str | None) -> str | None:
    if code is None:
        return None
    try:
        return str(eval(code, {"__builtins__": SAFE_BUILTINS}))  # noqa: S307 - probe only
    except Exception:  # noqa: BLE001 - any failure of the model's line is a wrong answer
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("family")
    parser.add_argument("--cases", type=Path, help="memory.db to take --ids from")
    parser.add_argument("--ids", default="", help="comma-separated case ids to show")
    parser.add_argument("--none", action="store_true", help="show no case")
    args = parser.parse_args()

    rows = [json.loads(line) for line in (args.run / "holdout" / "results.jsonl").open()]
    tasks = [r for r in rows if r["task_id"].rsplit("-", 1)[1] == args.family]
    if not tasks:
        raise SystemExit(f"No held-out {args.family} task under {args.run}.")
    own = load_cases(args.run / "memory.db")
    fixed: list[ShownCase] | None = None
    if args.none:
        fixed = []
    elif args.ids:
        pool = load_cases(args.cases or args.run / "memory.db")
        fixed = [pool[int(i)] for i in args.ids.split(",")]
    llm = LocalChatModel()
    right = 0
    for row in tasks:
        shown = fixed if fixed is not None else [own[int(i)] for i in row["cases_shown"]]
        reply = llm.chat(code_messages(row["question"], shown, []), max_tokens=40)
        code = extract_code(reply.text)
        output = run_line(code)
        ok = output is not None and question_scorer(output, row["truth"])
        right += ok
        print(f"{'right' if ok else 'wrong'}  {row['truth']:<16} {code or reply.text[:40]!s}")
    source = f" of {args.cases}" if args.cases else ""
    label = (
        "no case"
        if fixed == []
        else f"cases {[c.id for c in fixed]}{source}"
        if fixed
        else "as run"
    )
    print(f"{args.family}, {label}: {right}/{len(tasks)} right")


if __name__ == "__main__":
    main()
