"""Loading GAIA splits: both metadata formats, hidden answers, and every malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memory_agent.errors import InvalidInputError
from memory_agent.evals.gaia import find_metadata, load_split, parse_level

SAMPLE = Path(__file__).resolve().parent / "data" / "gaia"


def write_rows(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def row(task_id: str, **fields: object) -> str:
    base: dict[str, object] = {
        "task_id": task_id,
        "Question": f"question {task_id}?",
        "Level": 1,
        "Final answer": "yes",
        "file_name": "",
    }
    base.update(fields)
    return json.dumps(base)


def test_sample_validation_split_loads_with_attachments() -> None:
    split = load_split(SAMPLE / "validation")
    assert split.problems == []
    assert [t.task_id for t in split.tasks] == [
        "v-txt", "v-csv", "v-json", "v-xlsx", "v-pdf", "v-docx", "v-plain"
    ]  # fmt: skip
    suffixes = {t.files[0].suffix for t in split.tasks if t.files}
    assert suffixes == {".txt", ".csv", ".json", ".xlsx", ".pdf", ".docx"}
    assert all(f.is_file() for t in split.tasks for f in t.files)
    by_id = {t.task_id: t for t in split.tasks}
    assert by_id["v-pdf"].level == 3 and by_id["v-pdf"].final_answer == "Bluebird"
    assert by_id["v-plain"].files == ()
    assert by_id["v-txt"].annotator_metadata["Steps"] == "hand-made sample"


def test_parquet_split_with_string_levels_and_hidden_answers() -> None:
    split = load_split(SAMPLE / "test")
    assert split.metadata_file.name == "metadata.parquet"
    assert [(t.task_id, t.level, t.final_answer) for t in split.tasks] == [
        ("t-1", 1, None),
        ("t-2", 2, None),
    ]
    assert not any(t.scored for t in split.tasks)
    assert split.tasks[1].files[0].name == "notes.txt"


def test_dataset_root_with_split_name(tmp_path: Path) -> None:
    write_rows(tmp_path / "2023" / "validation", [row("a")])
    assert find_metadata(tmp_path, "validation") == tmp_path / "2023/validation/metadata.jsonl"
    assert [t.task_id for t in load_split(tmp_path, "validation").tasks] == ["a"]


def test_missing_metadata_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"No metadata\.jsonl or metadata\.parquet"):
        load_split(tmp_path, "validation")
    with pytest.raises(InvalidInputError, match="is not a folder"):
        load_split(tmp_path / "nowhere")


def test_bad_rows_become_problems_and_good_rows_still_load(tmp_path: Path) -> None:
    (tmp_path / "present.txt").write_text("x")
    folder = write_rows(
        tmp_path,
        [
            row("good", file_name="present.txt"),
            '{"task_id": "broken", "Question": ',
            row("empty", Question="   "),
            row("lvl", Level="7"),
            row("lvl-text", Level="hard"),
            row("nofile", file_name="absent.pdf"),
            row("escape", file_name="../secret.txt"),
            json.dumps({"Question": "no id", "Level": 1}),
            "[1, 2]",
            row("good"),
            row("string-level", Level="Level 2", **{"Final answer": "?"}),
        ],
    )
    split = load_split(folder)
    assert [t.task_id for t in split.tasks] == ["good", "string-level"]
    assert split.tasks[1].level == 2 and split.tasks[1].final_answer is None
    messages = {p.row: p.message for p in split.problems}
    assert "line 2 of metadata.jsonl is not valid JSON" in messages[2]
    assert "Question is empty" in messages[3]
    assert "unknown Level '7'" in messages[4]
    assert "unknown Level 'hard'" in messages[5]
    assert "attachment 'absent.pdf' is missing" in messages[6]
    assert "must be a plain name" in messages[7]
    assert "has no task_id" in messages[8]
    assert "not a JSON object" in messages[9]
    assert "duplicate task_id 'good'" in messages[10]
    assert {p.task_id for p in split.problems if p.row in (3, 4, 6)} == {"empty", "lvl", "nofile"}


def test_unreadable_parquet_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "metadata.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInputError, match="not a readable parquet file"):
        load_split(tmp_path)


@pytest.mark.parametrize(
    ("value", "level"),
    [(1, 1), ("3", 3), (" 2 ", 2), ("Level 1", 1), (2.0, 2), (0, None), (True, None),
     ("1.5", None), (None, None), (4, None)],
)  # fmt: skip
def test_parse_level(value: object, level: int | None) -> None:
    assert parse_level(value) == level


def test_select_by_level_and_limit() -> None:
    split = load_split(SAMPLE / "validation")
    assert [t.task_id for t in split.select(level=2).tasks] == ["v-json", "v-xlsx"]
    assert [t.task_id for t in split.select(level=1, limit=2).tasks] == ["v-txt", "v-csv"]
