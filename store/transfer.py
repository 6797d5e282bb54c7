"""Reading case files for import: our JSONL export format and Memento case banks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from memory_agent.errors import InvalidInputError
from memory_agent.store.records import NewCase, StageStats

ImportFormat = Literal["jsonl", "memento"]

_JSONL_FIELDS = {
    "id", "namespace", "task", "plan", "trajectory", "answer", "reward", "outcome",
    "source", "meta", "created_at", "updated_at", "stats",
}  # fmt: skip


def _row_to_case(row: dict[str, Any], fmt: ImportFormat) -> tuple[NewCase, str | None]:
    """The case a parsed line describes and the namespace it names (if any)."""
    if fmt == "memento":
        missing = [key for key in ("case", "plan") if key not in row]
        if missing:
            raise InvalidInputError(
                f"missing field(s) {', '.join(missing)}; a Memento line is "
                '{"case": question, "plan": plan, "case_label": "positive"|"negative"}'
            )
        label = row.get("case_label")
        if label not in ("positive", "negative"):
            raise InvalidInputError(f'case_label must be "positive" or "negative", got {label!r}')
        plan = row["plan"]
        if not isinstance(plan, str):
            plan = json.dumps(plan, ensure_ascii=False)
        positive = label == "positive"
        return (
            NewCase(
                task=row["case"],
                plan=plan,
                reward=1.0 if positive else 0.0,
                outcome="success" if positive else "failure",
                source="memento",
            ),
            None,
        )
    unknown = set(row) - _JSONL_FIELDS
    if unknown:
        raise InvalidInputError(
            f"unknown field(s) {', '.join(sorted(unknown))}; expected some of "
            f"{', '.join(sorted(_JSONL_FIELDS))} (is this a Memento file? use --format memento)"
        )
    if "task" not in row:
        raise InvalidInputError('missing field "task"')
    stats: dict[str, StageStats] = {}
    for stage, raw in (row.get("stats") or {}).items():
        try:
            stats[str(stage)] = StageStats(
                visits=int(raw["visits"]),
                q_value=float(raw["q_value"]),
                reward_sum=float(raw.get("reward_sum", 0.0)),
                last_reward=None if raw.get("last_reward") is None else float(raw["last_reward"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"stats for stage {stage!r} are malformed: {exc}") from exc
    namespace = row.get("namespace")
    return (
        NewCase(
            task=row["task"],
            plan=row.get("plan"),
            trajectory=row.get("trajectory"),
            answer=row.get("answer"),
            reward=row.get("reward"),
            outcome=row.get("outcome"),
            source=row.get("source") or "import",
            meta=row.get("meta") or {},
            stats=stats,
        ),
        namespace if isinstance(namespace, str) else None,
    )


def read_case_file(
    path: Path, fmt: ImportFormat
) -> Iterator[tuple[int, NewCase | None, str | None, str | None]]:
    """Yield (line number, case, namespace, error) for each non-blank line.

    Exactly one of case and error is set. Lines are read as bytes and decoded one by one,
    so a non-UTF-8 byte is reported against its line instead of failing the whole file.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    None,
                    None,
                    f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "re-encode the file as UTF-8",
                )
                continue
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(row, dict):
                yield number, None, None, f"expected a JSON object, got {type(row).__name__}"
                continue
            try:
                case, namespace = _row_to_case(row, fmt)
            except InvalidInputError as exc:
                yield number, None, None, str(exc)
                continue
            yield number, case, namespace, None
