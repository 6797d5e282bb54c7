"""The run log: every run, LLM call, tool call, retrieval, reward and credit, in the store's
database (tables from migration 0004_run_log), in the spirit of simonw/llm's logs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import sessionmaker

from memory_agent.errors import InvalidInputError
from memory_agent.store.models import utcnow
from memory_agent.store.run_log_models import RunEventRow, RunRow

EventListener = Callable[[str, dict[str, Any]], None]


def loggable(value: Any) -> Any:
    """`value` with every string made encodable: lone surrogates (from undecodable bytes in a
    command line, a file name or a tool's output) become U+FFFD, so a run with such text is
    logged instead of failing in the database driver. Walks dicts, lists and tuples."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
        return value
    if isinstance(value, dict):
        return {loggable(k): loggable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [loggable(v) for v in value]
    return value


class RunNotFoundError(InvalidInputError):
    """A run id the log does not hold."""

    exit_code = 3


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event of a run logged whole (`RunLog.record`)."""

    kind: str
    name: str | None = None
    duration_s: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run whose row and events are all known when it is logged, written in one go
    (`RunLog.record`): a retrieval through the service is one."""

    run_id: str
    fields: dict[str, Any]
    """`RunRow` columns besides the id (status, namespace, task, cases_shown, ...)."""
    events: tuple[NewEvent, ...] = ()


_RUN_DEFAULTS: dict[str, Any] = {
    "status": "running", "cases_shown": [], "cases_used": [], "prompt_tokens": 0,
    "completion_tokens": 0, "ground_truth": None, "plan": None, "answer": None,
    "reward": None, "reward_source": None, "citation": None, "case_id": None, "error": None,
    "finished_at": None, "elapsed_s": None,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunEvent:
    seq: int
    kind: str
    name: str | None
    started_at: datetime
    duration_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "name": self.name,
            "started_at": self.started_at.isoformat(),
            "duration_s": self.duration_s,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "data": self.data,
        }


def run_to_json(row: RunRow) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "namespace": row.namespace,
        "task": row.task,
        "status": row.status,
        "model": row.model,
        "policy": row.policy,
        "prompt_style": row.prompt_style,
        "learn": row.learn,
        "ground_truth": row.ground_truth,
        "plan": row.plan,
        "answer": row.answer,
        "reward": row.reward,
        "reward_source": row.reward_source,
        "citation": row.citation,
        "cases_shown": row.cases_shown,
        "cases_used": row.cases_used,
        "case_id": row.case_id,
        "error": row.error,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "elapsed_s": row.elapsed_s,
    }


class RunLog:
    """Writes and reads runs and their events. Each write commits on its own, so a crash
    keeps everything logged up to it."""

    def __init__(self, engine: Engine, listener: EventListener | None = None) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self.listener = listener

    def start(self, run_id: str, **fields: Any) -> None:
        fields = loggable(fields)
        with self._sessions.begin() as session:
            if session.get(RunRow, run_id) is None:
                session.add(
                    RunRow(
                        id=run_id,
                        status="running",
                        cases_shown=[],
                        cases_used=[],
                        prompt_tokens=0,
                        completion_tokens=0,
                        started_at=utcnow(),
                        **fields,
                    )
                )

    def record(self, runs: Sequence[NewRun]) -> None:
        """Log whole runs, rows and events, in one transaction (two multi-row INSERTs): the
        cheap way to log many small runs at once (`RunLogBatcher`). The run ids must be new;
        the events of each run are numbered from 1 in the order given."""
        if not runs:
            return
        now = utcnow()
        run_rows = [
            {**_RUN_DEFAULTS, "started_at": now, **loggable(run.fields), "id": run.run_id}
            for run in runs
        ]
        event_rows = [
            {"run_id": run.run_id, "seq": seq, "kind": ev.kind, "name": loggable(ev.name),
             "started_at": now, "duration_s": ev.duration_s, "prompt_tokens": None,
             "completion_tokens": None, "data": loggable(ev.data)}
            for run in runs
            for seq, ev in enumerate(run.events, start=1)
        ]  # fmt: skip
        with self._sessions.begin() as session:
            session.execute(insert(RunRow), run_rows)
            if event_rows:
                session.execute(insert(RunEventRow), event_rows)
        if self.listener is not None:
            for row in event_rows:
                self.listener(
                    row["kind"],
                    {"name": row["name"], "duration_s": row["duration_s"], "prompt_tokens": None,
                     "completion_tokens": None, **row["data"]},
                )  # fmt: skip

    def update(self, run_id: str, **fields: Any) -> None:
        fields = loggable(fields)
        with self._sessions.begin() as session:
            session.execute(update(RunRow).where(RunRow.id == run_id).values(**fields))

    def finish(self, run_id: str, **fields: Any) -> None:
        """`update` that also stamps the run's finish time."""
        self.update(run_id, finished_at=utcnow(), **fields)

    def event(
        self,
        run_id: str,
        kind: str,
        name: str | None = None,
        *,
        duration_s: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        **data: Any,
    ) -> None:
        name, data = loggable(name), loggable(data)
        with self._lock, self._sessions.begin() as session:
            seq = session.scalar(
                select(func.coalesce(func.max(RunEventRow.seq), 0)).where(
                    RunEventRow.run_id == run_id
                )
            )
            session.add(
                RunEventRow(
                    run_id=run_id,
                    seq=int(seq or 0) + 1,
                    kind=kind,
                    name=name,
                    started_at=utcnow(),
                    duration_s=duration_s,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    data=data,
                )
            )
        if self.listener is not None:
            self.listener(
                kind,
                {"name": name, "duration_s": duration_s, "prompt_tokens": prompt_tokens,
                 "completion_tokens": completion_tokens, **data},
            )  # fmt: skip

    def get(self, run_id: str) -> RunRow:
        with self._sessions() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                # Allow a unique prefix, as people copy the first characters of an id.
                matches = list(
                    session.scalars(select(RunRow).where(RunRow.id.like(f"{run_id}%")).limit(2))
                )
                if len(matches) == 1:
                    return matches[0]
                raise RunNotFoundError(
                    f"No run {run_id!r} in the log; list runs with `memory-agent logs list`."
                )
            return row

    def recent(self, limit: int = 20, offset: int = 0) -> list[RunRow]:
        with self._sessions() as session:
            query = select(RunRow).order_by(RunRow.started_at.desc(), RunRow.id)
            return list(session.scalars(query.limit(limit).offset(offset)))

    def rewarded(self, namespace: str, limit: int) -> list[RunRow]:
        """The newest `limit` runs of `namespace` that have a reward, newest first."""
        with self._sessions() as session:
            query = (
                select(RunRow)
                .where(RunRow.namespace == namespace, RunRow.reward.is_not(None))
                .order_by(RunRow.started_at.desc(), RunRow.id)
            )
            return list(session.scalars(query.limit(limit)))

    def events(self, run_id: str) -> list[RunEvent]:
        with self._sessions() as session:
            rows = session.scalars(
                select(RunEventRow).where(RunEventRow.run_id == run_id).order_by(RunEventRow.seq)
            )
            return [
                RunEvent(r.seq, r.kind, r.name, r.started_at, r.duration_s, r.prompt_tokens,
                         r.completion_tokens, dict(r.data or {}))
                for r in rows
            ]  # fmt: skip
