"""Every error memory-agent raises on purpose. Each message says how to fix the problem."""

from __future__ import annotations


class MemoryAgentError(Exception):
    """Base class: the CLI prints these as a one-line message instead of a traceback."""

    exit_code = 1


class InvalidInputError(MemoryAgentError, ValueError):
    """Input that cannot be stored or used as given (empty task, oversized text, bad vector)."""

    exit_code = 2


class ImportFileError(InvalidInputError):
    """An import file with bad lines; `problems` lists (line number, message) pairs."""

    def __init__(self, message: str, problems: list[tuple[int, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class UnknownNamespaceError(MemoryAgentError, KeyError):
    """A namespace that holds no cases."""

    exit_code = 3

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CaseNotFoundError(MemoryAgentError, KeyError):
    """A case id that does not exist (or was deleted)."""

    exit_code = 3

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreConnectionError(MemoryAgentError):
    """The database URL does not lead to a usable database."""

    exit_code = 4


class StoreCorruptError(StoreConnectionError):
    """The database file is damaged ("database disk image is malformed", "not a database")."""


class StoreBusyError(MemoryAgentError):
    """Other processes kept changing the store's codebooks while a write was encoded."""

    exit_code = 4


class EmbedderError(MemoryAgentError):
    """The embedding model could not be loaded or called, or disagrees with the store."""

    exit_code = 5


class DependencyMissingError(MemoryAgentError):
    """An optional package is needed for this feature; the message names the install command."""

    exit_code = 6


class NamespaceAccessError(MemoryAgentError, PermissionError):
    """A namespace with an access token, and the token was not presented or is wrong."""

    exit_code = 8


class RunFailedError(MemoryAgentError):
    """An agent run, or every attempt of an evaluation, ended with an error."""

    exit_code = 7
