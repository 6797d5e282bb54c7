"""The method a case carries: its plan with the task's values taken out.

Two cases of one kind of task that were solved the same way have plans that differ only in
their literals (the number, the word, the letter): `bin(37).count('1')` and
`bin(41).count('1')`. With the string literals and numbers masked they read the same, so what
a method earned on tasks like this one can speak for a case that carries it and has no record
of its own yet: on the twins stream the memory fills with look-alike "successes" that used
the twin's method and were right by chance, each new one untried (`track` with
`policy.track_method`).
"""

from __future__ import annotations

import hashlib
import re

# A string literal: triple-quoted, or single- or double-quoted with backslash escapes.
_STRING = re.compile(
    r"""'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*\"""", re.DOTALL
)
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def plan_method(plan: str | None) -> str | None:
    """The plan with every string literal as `S` and every number as `0`, whitespace
    collapsed; None for a case without a plan."""
    if plan is None or not plan.strip():
        return None
    masked = _STRING.sub("S", plan)
    masked = _NUMBER.sub("0", masked)
    return _SPACE.sub(" ", masked).strip()


def method_id(method: str) -> int:
    """A stable id for a method (63 bits, positive): the key of its outcome history, kept
    beside the cases' (whose ids are small positive integers) without colliding with them in
    practice."""
    digest = hashlib.blake2b(method.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
