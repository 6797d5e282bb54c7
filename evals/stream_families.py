"""The stream's task families, their look-alike twins and their drifted formats.

A family turns a reasoning-gym entry into (question, answer) and knows the one line of
Python that computes the answer (a worked example's plan). Its twin's questions read almost
the same but need another procedure (1 bits vs 0 bits, spelled backward vs letters sorted).

A drift is a format change of a family's questions from some point of the stream on: the
question reads almost as before, but the stored one-liner, filled in the obvious way, now
gives a wrong answer (the number arrives in hexadecimal without a prefix, the letter in
upper case, the word with a language tag). The answer is the same quantity as before; only
how the input is written changed, as when an upstream system changes its format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Entry = dict[str, Any]


@dataclass(frozen=True)
class Family:
    """A kind of task: a reasoning-gym dataset and how an entry becomes (question, answer)."""

    name: str
    source: str  # the reasoning-gym dataset it draws from
    build: Callable[[Entry], tuple[str, str]]
    solution: Callable[[Entry], str]  # one line of Python that computes the answer
    twin: str | None = None  # the family whose questions read almost the same


@dataclass(frozen=True)
class Drift:
    """A family's questions after its format changed: same answer, new input format."""

    family: str
    build: Callable[[Entry], tuple[str, str]]
    solution: Callable[[Entry], str]
    stale_solution: Callable[[Entry], str]  # the old one-liner filled in from the new question


def _as_given(entry: Entry) -> tuple[str, str]:
    return str(entry["question"]), str(entry["answer"])


def _number(entry: Entry) -> int:
    return int(entry["metadata"]["number"])


def _word_text(entry: Entry) -> str:
    return str(entry["metadata"]["word"])


def _word(entry: Entry) -> str:
    return repr(_word_text(entry))


def _zero_bits(entry: Entry) -> tuple[str, str]:
    number = _number(entry)
    question = f"How many 0 bits are there in the binary representation of the number {number}?"
    return question, str(bin(number)[2:].count("0"))


def _sorted_letters(entry: Entry) -> tuple[str, str]:
    word = _word_text(entry)
    question = (
        f"Spell this word with its letters in alphabetical order (example: sun -> nsu): {word}"
    )
    return question, "".join(sorted(word))


def _span(entry: Entry) -> str:
    return " ".join(str(w) for w in entry["metadata"]["span"])


def _target(entry: Entry) -> str:
    return str(entry["metadata"]["target_letter"])


def _words_with_letter(entry: Entry) -> tuple[str, str]:
    letter = _target(entry)
    words = [str(w) for w in entry["metadata"]["span"]]
    question = f'How many words contain the letter "{letter}" in the text: "{" ".join(words)}"?'
    return question, str(sum(1 for w in words if letter in w.lower()))


def _letter_code(entry: Entry, template: str, *, letter: str | None = None) -> str:
    return template.format(letter=repr(letter or _target(entry)), text=repr(_span(entry)))


def _numbers(entry: Entry) -> str:
    return ", ".join(str(int(n)) for n in entry["metadata"]["numbers"])


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("count_bits", "count_bits", _as_given,
               lambda e: f"bin({_number(e)}).count('1')", twin="count_zero_bits"),
        Family("count_zero_bits", "count_bits", _zero_bits,
               lambda e: f"bin({_number(e)})[2:].count('0')", twin="count_bits"),
        Family("spell_backward", "spell_backward", _as_given,
               lambda e: f"{_word(e)}[::-1]", twin="sort_letters"),
        Family("sort_letters", "spell_backward", _sorted_letters,
               lambda e: f"''.join(sorted({_word(e)}))", twin="spell_backward"),
        Family("letter_counting", "letter_counting", _as_given,
               lambda e: _letter_code(e, "{text}.lower().count({letter})"),
               twin="words_with_letter"),
        Family("words_with_letter", "letter_counting", _words_with_letter,
               lambda e: _letter_code(e, "sum({letter} in w.lower() for w in {text}.split())"),
               twin="letter_counting"),
        Family("gcd", "gcd", _as_given,
               lambda e: f"import math; math.gcd({_numbers(e)})", twin="lcm"),
        Family("lcm", "lcm", _as_given,
               lambda e: f"import math; math.lcm({_numbers(e)})", twin="gcd"),
    )
}  # fmt: skip
DEFAULT_FAMILIES = ("count_bits", "spell_backward", "letter_counting")


# ---------------------------------------------------------------- drifted formats


def _hex_digits(entry: Entry) -> str:
    return format(_number(entry), "x")


def _hex_bits(entry: Entry) -> tuple[str, str]:
    # the number now arrives in hexadecimal without a 0x prefix: bin(<digits>) reads a
    # decimal literal (a wrong count) or is no Python at all when a digit is a letter
    question = (
        "How many 1 bits are there in the binary representation of the hexadecimal number "
        f"{_hex_digits(entry)}?"
    )
    return question, str(bin(_number(entry)).count("1"))


TAG = "en:"  # the language tag the spelled word now carries


def _tagged_word(entry: Entry) -> tuple[str, str]:
    # the word now carries a language tag; reversing the whole field keeps the tag's letters
    word = _word_text(entry)
    return f"Spell this word backward (example: en:sun -> nus): {TAG}{word}", word[::-1]


def _upper_letter(entry: Entry) -> tuple[str, str]:
    # the letter now arrives in upper case while the text is lower case: counting the
    # given letter in the lower-cased text finds none of them
    letter = _target(entry).upper()
    question = f'How many times does the letter "{letter}" appear in the text: "{_span(entry)}"?'
    return question, str(_span(entry).lower().count(letter.lower()))


DRIFTS: dict[str, Drift] = {
    d.family: d
    for d in (
        Drift("count_bits", _hex_bits,
              lambda e: f"bin(int({_hex_digits(e)!r}, 16)).count('1')",
              lambda e: f"bin({_hex_digits(e)}).count('1')"),
        Drift("spell_backward", _tagged_word,
              lambda e: f"{TAG + _word_text(e)!r}.split(':')[1][::-1]",
              lambda e: f"{TAG + _word_text(e)!r}[::-1]"),
        Drift("letter_counting", _upper_letter,
              lambda e: _letter_code(e, "{text}.lower().count({letter}.lower())",
                                     letter=_target(e).upper()),
              lambda e: _letter_code(e, "{text}.lower().count({letter})",
                                     letter=_target(e).upper())),
    )
}  # fmt: skip


def drift_applies(entry: Entry, family: str) -> bool:
    """Whether the drifted format really breaks the old one-liner for this entry (a letter
    that is absent, or a hex number whose digits read as the same decimal count, would
    leave the old answer right by chance); such entries are skipped after the drift."""
    drift = DRIFTS[family]
    _, answer = drift.build(entry)
    try:
        stale = str(eval(drift.stale_solution(entry), {}))  # our own generated one-liner
    except (SyntaxError, NameError, TypeError):
        # hex digits with letters are no decimal number; digits around one "e" read as a
        # float (bin(1e5) raises): either way the old one-liner gives no right answer
        return True
    return stale != answer
