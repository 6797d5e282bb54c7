"""Load a GAIA split: `metadata.jsonl` or `metadata.parquet` with the attachments beside it.

A row that cannot be used (bad JSON, empty question, unknown level, missing attachment)
becomes a `TaskProblem` instead of stopping the load, so a run records it and goes on.
Only a folder with no metadata at all is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_agent.errors import InvalidInputError
from memory_agent.evals.extras import eval_extra

METADATA_NAMES = ("metadata.jsonl", "metadata.parquet")
HIDDEN_ANSWER = "?"
LEVELS = (1, 2, 3)


@dataclass(frozen=True)
class GaiaTask:
    """One question of a split. `final_answer` is None when the split hides it (test set)."""

    task_id: str
    question: str
    level: int
    final_answer: str | None
    files: tuple[Path, ...] = ()
    annotator_metadata: Mapping[str, Any] = field(default_factory=dict)
    row: int = 0

    @property
    def scored(self) -> bool:
        return self.final_answer is not None


@dataclass(frozen=True)
class TaskProblem:
    """A metadata row that could not become a task; `row` counts from 1 (the line in JSONL)."""

    row: int
    task_id: str | None
    message: str


@dataclass(frozen=True)
class GaiaSplit:
    directory: Path
    metadata_file: Path
    tasks: list[GaiaTask]
    problems: list[TaskProblem]

    def select(self, *, level: int | None = None, limit: int | None = None) -> GaiaSplit:
        """The tasks of one level and/or the first `limit` of them (problems are kept)."""
        tasks = [t for t in self.tasks if level is None or t.level == level]
        if limit is not None:
            tasks = tasks[:limit]
        return GaiaSplit(self.directory, self.metadata_file, tasks, self.problems)


def find_metadata(directory: Path, split: str | None = None) -> Path:
    """The metadata file for `directory`, which may be the split folder or the dataset root.

    The dataset root of the upstream repository has `2023/<split>/metadata.*`; both
    layouts are accepted so the path printed by a download works as it is.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInputError(
            f"{directory} is not a folder. Pass the folder that holds a GAIA split "
            "(metadata.jsonl or metadata.parquet and the attachments)."
        )
    places = [directory]
    if split:
        places += [directory / split, directory / "2023" / split]
    for place in places:
        for name in METADATA_NAMES:
            if (place / name).is_file():
                return place / name
    looked = ", ".join(str(p) for p in places)
    raise InvalidInputError(
        f"No metadata.jsonl or metadata.parquet found (looked in: {looked}). Point to a GAIA "
        "split folder, or to the dataset root together with --split validation|test."
    )


def load_split(directory: Path, split: str | None = None) -> GaiaSplit:
    """Every usable task of the split in file order, and a problem record for every other row."""
    metadata_file = find_metadata(Path(directory), split)
    base = metadata_file.parent
    tasks: list[GaiaTask] = []
    problems: list[TaskProblem] = []
    seen: set[str] = set()
    for row, raw in _read_rows(metadata_file):
        if isinstance(raw, str):
            problems.append(TaskProblem(row, None, raw))
            continue
        result = task_from_row(raw, row, base)
        if isinstance(result, TaskProblem):
            problems.append(result)
        elif result.task_id in seen:
            problems.append(
                TaskProblem(row, result.task_id, f"duplicate task_id {result.task_id!r}")
            )
        else:
            seen.add(result.task_id)
            tasks.append(result)
    if not tasks and not problems:
        raise InvalidInputError(f"{metadata_file} holds no tasks.")
    return GaiaSplit(base, metadata_file, tasks, problems)


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, row) pairs; a row that is no JSON object comes as an error message."""
    if path.suffix == ".parquet":
        for number, row in enumerate(_parquet_rows(path), start=1):
            yield number, row
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"line {number} of {path.name} is not valid JSON ({exc.msg})"
                continue
            if not isinstance(value, dict):
                yield number, f"line {number} of {path.name} is not a JSON object"
                continue
            yield number, value


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    with eval_extra("Reading metadata.parquet"):
        import pyarrow.parquet as pq
    try:
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InvalidInputError(f"{path} is not a readable parquet file ({exc}).") from exc
    return rows


def parse_level(value: object) -> int | None:
    """1, 2 or 3 from an int or a string such as "2" or "Level 2"; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("level").strip()
        if not text.isdigit():
            return None
        number = int(text)
    else:
        return None
    return number if number in LEVELS else None


def task_from_row(row: Mapping[str, Any], number: int, base: Path) -> GaiaTask | TaskProblem:
    """A task from one metadata row, or the problem that keeps it from being one."""
    raw_id = row.get("task_id")
    task_id = str(raw_id).strip() if raw_id is not None else ""
    if not task_id:
        return TaskProblem(number, None, f"row {number} has no task_id")

    def problem(message: str) -> TaskProblem:
        return TaskProblem(number, task_id, f"task {task_id} (row {number}): {message}")

    question = row.get("Question")
    if not isinstance(question, str) or not question.strip():
        return problem("the Question is empty")
    level = parse_level(row.get("Level"))
    if level is None:
        return problem(f"unknown Level {row.get('Level')!r}; expected 1, 2 or 3")
    answer = row.get("Final answer")
    final_answer = None if answer is None or str(answer).strip() == HIDDEN_ANSWER else str(answer)
    files: tuple[Path, ...] = ()
    file_name = row.get("file_name")
    if file_name:
        relative = Path(str(file_name))
        if relative.is_absolute() or ".." in relative.parts:
            return problem(f"file_name {file_name!r} must be a plain name inside {base}")
        attachment = base / relative
        if not attachment.is_file():
            return problem(f"attachment {file_name!r} is missing from {base}")
        files = (attachment,)
    metadata = row.get("Annotator Metadata")
    return GaiaTask(
        task_id=task_id,
        question=question,
        level=level,
        final_answer=final_answer,
        files=files,
        annotator_metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        row=number,
    )


def write_metadata(path: Path, tasks: list[GaiaTask]) -> None:
    """Write tasks as a GAIA `metadata.jsonl` (used for generated streams)."""
    with path.open("w", encoding="utf-8") as handle:
        for task in tasks:
            record = {
                "task_id": task.task_id,
                "Question": task.question,
                "Level": task.level,
                "Final answer": task.final_answer
                if task.final_answer is not None
                else HIDDEN_ANSWER,
                "file_name": task.files[0].name if task.files else "",
                "Annotator Metadata": dict(task.annotator_metadata),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
