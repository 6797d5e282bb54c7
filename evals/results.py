"""The results file of a run: one JSON line per task and attempt, appended under a lock.

Each record is flushed and fsynced as soon as the attempt ends, so a crash loses at most the
attempt in flight. A torn last line (the process died mid-write) is skipped on reading and
fenced off with a newline before the next append.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memory_agent.errors import InvalidInputError

RESULTS_NAME = "results.jsonl"
RUN_INFO_NAME = "run.json"


class ResultLog:
    """Append-only JSONL of attempt records, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        with self._thread_lock, self.path.open("a+b") as handle:
            _lock_file(handle)
            try:
                yield handle
            finally:
                _unlock_file(handle)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
        with self._locked() as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")  # fence off a torn line left by a crash
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        """Every complete record in file order (torn or foreign lines are skipped)."""
        if not self.path.exists():
            return []
        records: list[dict[str, Any]] = []
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(value, dict) and "task_id" in value and "attempt" in value:
                    records.append(value)
        return records

    def finished(self) -> set[tuple[str, int]]:
        """(task_id, attempt) pairs already recorded."""
        return {(str(r["task_id"]), int(r["attempt"])) for r in self.read()}


def _lock_file(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the thread lock is all we have
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def _unlock_file(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_run_info(run_dir: Path, info: dict[str, Any], *, resume: bool) -> dict[str, Any]:
    """Record how the run was made; on resume, refuse a run made with other settings."""
    path = run_dir / RUN_INFO_NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if not resume:
            raise InvalidInputError(
                f"A run named {run_dir.name!r} already exists in {run_dir}. Add --resume to "
                "continue it, or choose another --run-name."
            )
        for key in ("mode", "pass_k", "policy", "metadata_file"):
            if old.get(key) != info.get(key):
                raise InvalidInputError(
                    f"Cannot resume {run_dir.name!r}: it was made with {key}={old.get(key)!r}, "
                    f"now {key}={info.get(key)!r}. Use the original settings or a new --run-name."
                )
        return dict(old)
    path.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return info
