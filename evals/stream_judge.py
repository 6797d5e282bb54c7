"""The feedback an agent gets on its own training runs: a strict or a lenient judge.

Real agent memories hold "successes" that are wrong: a judge (a model, a user's quick
thumbs-up) accepted an answer because it looked right. On a lenient task the judge here
accepts any answer of the right shape (a number where a number is asked, a word where a
word is), so a wrong answer on it is stored as a success. Which training tasks are lenient
is drawn once per stream (seeded) and written in the task's metadata, so every policy meets
the same judge; the policy never sees that label, only the reward.

Held-out tasks are always scored strictly by the runner against the truth.
"""

from __future__ import annotations

import re

from memory_agent.evals.gaia import GaiaTask
from memory_agent.scoring import is_float, normalize_number_str, question_scorer

STRICT = "strict"
LENIENT = "lenient"
_WORD = re.compile(r"^[A-Za-z][A-Za-z:'\-]*$")  # one word (a tag or apostrophe allowed)


def looks_like(answer: str, truth: str) -> bool:
    """True when `answer` has the shape of `truth`: a number for a number, one word (quotes
    around it ignored) for a word. What a lenient judge checks instead of the value; a
    program or a sentence is not accepted."""
    if is_float(truth):
        return normalize_number_str(answer) != float("inf")
    return bool(_WORD.match(answer.strip().strip("'\"")))


def judge(task: GaiaTask, answer: str | None) -> float:
    """The reward for `answer`: 1.0 or 0.0, strict or lenient as the task's metadata says."""
    truth = task.final_answer
    if truth is None or answer is None or not str(answer).strip():
        return 0.0
    if question_scorer(answer, truth):
        return 1.0
    lenient = task.annotator_metadata.get("judge") == LENIENT
    return 1.0 if lenient and looks_like(str(answer), truth) else 0.0
