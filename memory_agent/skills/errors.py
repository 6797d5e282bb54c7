"""Errors of the skills feature; each message says what to do."""

from __future__ import annotations

from memory_agent.errors import InvalidInputError


class SkillNotFoundError(InvalidInputError):
    """A skill name (or name@version) that is not stored."""

    exit_code = 3


class SkillFileError(InvalidInputError):
    """An adapter file that is missing, damaged or not a memory-agent skill."""


class SkillBaseMismatchError(InvalidInputError):
    """A skill trained for a different base model than the one loaded."""


class NoTrainingCasesError(InvalidInputError):
    """Too few successful cases to train (and hold some out)."""
