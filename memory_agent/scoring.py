"""GAIA's answer scorer, with the semantics of the official `question_scorer`.

The ground truth decides how the answer is compared: a number is compared as a float after
stripping `$`, `%` and `,`; a list (the truth contains `,` or `;`) element by element; a
string after removing whitespace and punctuation and lower-casing.

It lives in the core package because the runtime scores episodes with it (its reward); the
evals import it from here (memory_agent.evals.scorer re-exports it), not the other way round.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = set(string.punctuation)


def is_float(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def normalize_number_str(number_str: str) -> float:
    """The float in a number string with `$ % ,` removed; inf when it is no number."""
    for char in ("$", "%", ","):
        number_str = number_str.replace(char, "")
    try:
        return float(number_str)
    except ValueError:
        return float("inf")


def split_string(text: str, char_list: tuple[str, ...] = (",", ";")) -> list[str]:
    pattern = f"[{''.join(char_list)}]"
    return re.split(pattern, text)


def normalize_str(text: str, remove_punct: bool = True) -> str:
    """Whitespace removed, lower-cased and, unless told otherwise, punctuation removed."""
    no_spaces = re.sub(r"\s", "", text)
    if remove_punct:
        return "".join(ch for ch in no_spaces.lower() if ch not in _PUNCTUATION)
    return no_spaces.lower()


def question_scorer(model_answer: str | None, ground_truth: str) -> bool:
    """True when `model_answer` matches `ground_truth` under GAIA's rules; None is wrong."""
    if model_answer is None:
        return False
    model_answer = str(model_answer)
    if is_float(ground_truth):
        return normalize_number_str(model_answer) == float(ground_truth)
    if any(char in ground_truth for char in (",", ";")):
        gt_elems = split_string(ground_truth)
        ma_elems = split_string(model_answer)
        if len(gt_elems) != len(ma_elems):
            return False
        for ma_elem, gt_elem in zip(ma_elems, gt_elems, strict=True):
            if is_float(gt_elem):
                if normalize_number_str(ma_elem) != float(gt_elem):
                    return False
            elif normalize_str(ma_elem, remove_punct=False) != normalize_str(
                gt_elem, remove_punct=False
            ):
                return False
        return True
    return normalize_str(model_answer) == normalize_str(ground_truth)
