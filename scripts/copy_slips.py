"""How often a wrong spell_backward answer came from a shown case's word, in `eval stream` runs.

The 135M model types the word it must reverse in its one-liner and sometimes types it wrong.
If the slips came from the examples (the word blended with a shown case's word), a policy
could avoid them by what it shows; if they are the model's own, no choice of cases removes
them. A slip counts as traceable to a shown case when the typed word is within 0.5 (difflib
ratio) of a shown case's word and that word holds every letter the typed word has and the
task's word lacks.

Usage: python scripts/copy_slips.py RUN_DIR [RUN_DIR ...]   (an --out folder of eval stream)
"""

from __future__ import annotations

import difflib
import json
import re
import sqlite3
import sys
from pathlib import Path

TYPED = re.compile(r"'([^']*)'\[::-1\]")
LITERAL = re.compile(r"'([^']*)'")
TAG = "en:"  # the drifted format's language tag (evals/stream_families.py)


def _word(text: str) -> str:
    return text.lower().replace(TAG, "")


def slips(home: Path) -> tuple[int, int, list[tuple[str, str, str]]]:
    """(wrongly typed words, those traceable to a shown case, examples) of one policy run."""
    with sqlite3.connect(home / "memory.db") as db:
        plans = {int(i): p or "" for i, p in db.execute("SELECT id, plan FROM cases")}
    typed_wrong = traced = 0
    examples: list[tuple[str, str, str]] = []
    for phase in ("train", "holdout"):
        path = home / phase / "results.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if not row["task_id"].endswith("spell_backward") or row["score"]:
                continue
            found = TYPED.search(row["reasoning_trace"] or "")
            if found is None:
                continue
            typed, word = _word(found.group(1)), _word(row["question"].rsplit(": ", 1)[1])
            if typed == word:
                continue
            typed_wrong += 1
            shown = [_word(m.group(1)) for c in row["cases_shown"]
                     if (m := LITERAL.search(plans.get(int(c), "")))]  # fmt: skip
            extra = set(typed) - set(word)
            for other in shown:
                close = difflib.SequenceMatcher(None, typed, other).ratio() >= 0.5
                if close and extra and extra <= set(other):
                    traced += 1
                    examples.append((word, typed, other))
                    break
    return typed_wrong, traced, examples


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    total = traced = 0
    examples: list[tuple[str, str, str]] = []
    for run in (Path(a) for a in argv):
        for home in sorted(run.glob("seed-*/*/")):
            if (home / "memory.db").exists():
                t, s, e = slips(home)
                total, traced, examples = total + t, traced + s, examples + e
    print(f"spell_backward answers with the word typed wrong: {total}; "
          f"traceable to a shown case's word: {traced}")  # fmt: skip
    for word, typed, other in examples[:8]:
        print(f"  task {word!r} typed {typed!r} shown {other!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
