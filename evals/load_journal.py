"""Reading the load benchmark's worker journals (see evals/load_worker.py): incrementally
while the workers run, and whole for the checks afterwards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Tail:
    """New complete lines of a file another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._rest = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._rest + chunk
        # A line still being written is left for the next read.
        *lines, self._rest = data.split(b"\n")
        return [json.loads(line) for line in lines if line]


@dataclass
class Acked:
    """What one operation's acknowledgment promises the store holds."""

    worker: int
    op: str
    ids: list[int]
    ns: str
    task: str | None = None


@dataclass
class History:
    """Everything the journals say, across workers and restarts."""

    acked: list[Acked] = field(default_factory=list)
    # Operations a kill interrupted: begun, never acknowledged nor failed.
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    open_ms: list[float] = field(default_factory=list)
    checks: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)


def read_history(folder: Path, workers: int) -> History:
    history = History()
    for worker in range(workers):
        path = folder / f"journal-{worker}.jsonl"
        begun: dict[str, Any] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            kind = event["t"]
            if kind == "start":
                if begun is not None:  # the previous generation was killed inside this op
                    history.in_flight.append({**begun, "worker": worker})
                begun = None
            elif kind == "open":
                history.open_ms.append(float(event["ms"]))
            elif kind == "begin":
                begun = event
            elif kind == "ack":
                assert begun is not None and begun["seq"] == event["seq"], (worker, event)
                history.acked.append(
                    Acked(worker, event["op"], list(event["ids"]), event["ns"], begun.get("task"))
                )
                history.latencies.setdefault(event["op"], []).append(float(event["ms"]))
                begun = None
            elif kind == "err":
                history.errors.append({**event, "worker": worker})
                if event["kind"] == "StoreConnectionError" and begun is not None:
                    # The connection broke: the operation may have committed just before (the
                    # error says so); like a killed one, it counts as all or nothing.
                    history.in_flight.append({**begun, "worker": worker, "failed": True})
                begun = None
            elif kind == "done":
                history.done.add(worker)
            elif kind == "check":
                history.checks[worker] = event
        if begun is not None:
            history.in_flight.append({**begun, "worker": worker})
    return history
