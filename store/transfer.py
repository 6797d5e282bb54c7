"""Moving cases in and out of a store: JSONL export, and import of our export format and of
Memento case banks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import select

from memory_agent.errors import ImportFileError, InvalidInputError
from memory_agent.store.models import CaseRow
from memory_agent.store.records import ImportReport, NewCase, StageStats
from memory_agent.store.room import Room
from memory_agent.store.rows import Progress, require_namespace, to_case
from memory_agent.store.validation import check_namespace, check_new_case, check_stage_stats

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
    raw_stats = row.get("stats")
    if raw_stats is None:
        raw_stats = {}
    if not isinstance(raw_stats, dict):
        raise InvalidInputError(
            'stats must be an object of stage name to statistics, e.g. {"plan": {"visits": 3, '
            f'"q_value": 0.5}}}}; got {type(raw_stats).__name__}'
        )
    stats: dict[str, StageStats] = {
        stage: check_stage_stats(stage, raw) for stage, raw in raw_stats.items()
    }
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


class Transfer(Room):
    """Export and import of case files."""

    def export(self, target: Path | IO[str], namespace: str | None = None) -> int:
        """Write live cases as JSONL (all namespaces unless one is named); returns the count."""
        query = select(CaseRow).where(CaseRow.deleted_at.is_(None)).order_by(CaseRow.id)
        if namespace is not None:
            ns = self.namespace(namespace)
            with self.sessions() as session:
                require_namespace(session, ns)
            query = query.where(CaseRow.namespace == ns)

        def write(handle: IO[str]) -> int:
            count = 0
            with self.sessions() as session:
                for chunk in session.scalars(query.execution_options(yield_per=1000)).partitions():
                    stats = self.case_stats.read(session, [r.id for r in chunk])
                    for row in chunk:
                        record = to_case(row, stats.get(row.id)).to_json()
                        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                        count += 1
            return count

        if isinstance(target, Path):
            tmp = target.with_name(target.name + ".partial")
            with tmp.open("w", encoding="utf-8") as handle:
                count = write(handle)
            tmp.replace(target)  # never leave a half-written export under the real name
            return count
        return write(target)

    def import_file(
        self,
        path: Path,
        *,
        fmt: ImportFormat = "jsonl",
        namespace: str | None = None,
        skip_invalid: bool = False,
        on_progress: Progress | None = None,
    ) -> ImportReport:
        """Import a JSONL case file (our export format, or a Memento case bank).

        All-or-nothing by default: every line is checked before anything is written, and any
        bad line aborts the import with each problem listed by line number. With
        `skip_invalid`, good lines are imported and bad ones reported. Cases already stored
        (same task, plan and answer in the namespace) are skipped, so re-running an import
        after a crash or a fix adds only what is missing.
        """
        report = ImportReport()
        good: list[NewCase] = []
        targets: list[str | None] = []
        for number, case, ns, error in read_case_file(path, fmt):
            if case is not None:
                try:
                    case = check_new_case(case, self.settings)
                    target = namespace if namespace is not None else ns
                    if target is not None:
                        check_namespace(target)
                except InvalidInputError as exc:
                    error = str(exc)
                else:
                    good.append(case)
                    targets.append(target)
                    continue
            report.invalid.append((number, error or "invalid"))
        if report.invalid and not skip_invalid:
            shown = "; ".join(f"line {n}: {msg}" for n, msg in report.invalid[:5])
            more = f" (and {len(report.invalid) - 5} more)" if len(report.invalid) > 5 else ""
            raise ImportFileError(
                f"{path} has {len(report.invalid)} bad line(s), nothing was imported: "
                f"{shown}{more}. Fix them, or pass --skip-invalid to import the good lines.",
                report.invalid,
            )
        before = {ns: self.count_if_exists(ns) for ns in set(targets) | {namespace}}
        ids = self.memory.add_many(
            good,
            namespace=namespace,
            namespaces=targets,
            skip_duplicates=True,
            on_progress=on_progress,
        )
        report.added = len(ids)
        report.skipped_duplicates = len(good) - len(ids)
        after = sum(self.count_if_exists(ns) for ns in before)
        report.evicted = max(0, sum(before.values()) + report.added - after)
        return report

    def count_if_exists(self, namespace: str | None) -> int:
        ns = self.namespace(namespace)
        return self.memory.count(ns)
