"""GAIA's answer scorer, for the evals. It lives in memory_agent.scoring, where the runtime (which
must not depend on the evals) uses it for its reward; this module keeps the evals' import path."""

from __future__ import annotations

from memory_agent.scoring import (
    is_float,
    normalize_number_str,
    normalize_str,
    question_scorer,
    split_string,
)

__all__ = ["is_float", "normalize_number_str", "normalize_str", "question_scorer", "split_string"]
