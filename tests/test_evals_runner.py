"""The runner end to end with a scripted solver: records, pass@k, resume, crashes, modes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from itertools import combinations
from pathlib import Path

import pytest

from memory_agent.errors import InvalidInputError
from memory_agent.evals.gaia import GaiaTask, load_split
from memory_agent.evals.metrics import pass_at_k
from memory_agent.evals.results import ResultLog
from memory_agent.evals.runner import Attempt, run_eval

SAMPLE = Path(__file__).resolve().parent / "data" / "gaia"

# Two attempts per task of the hand-made validation split. "raise" makes the solver fail.
SCRIPT: dict[str, list[str | None]] = {
    "v-txt": ["4721", "4722"],
    "v-csv": ["Mango", "mango"],
    "v-json": ["alpha, beta", "alpha;beta;gamma"],
    "v-xlsx": ["$1,500", "1500"],
    "v-pdf": ["bluebird.", None],
    "v-docx": ["Friday", "Friday"],
    "v-plain": ["raise", "42"],
}
# Worked out by hand from SCRIPT and the truths in metadata.jsonl, not by the code under test.
CORRECT = {
    "v-txt": [True, False],
    "v-csv": [True, True],
    "v-json": [False, True],
    "v-xlsx": [True, True],
    "v-pdf": [True, False],
    "v-docx": [False, False],
    "v-plain": [False, True],
}
LEVEL = {"v-txt": 1, "v-csv": 1, "v-json": 2, "v-xlsx": 2, "v-pdf": 3, "v-docx": 1, "v-plain": 1}


class ScriptedSolver:
    """Replies from SCRIPT, reads each attachment, and notes every call it gets."""

    def __init__(self, script: dict[str, list[str | None]], stop_after: int | None = None):
        self.script = script
        self.calls: list[tuple[str, int, bool]] = []
        self.files_read: dict[str, int] = {}
        self.stop_after = stop_after
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def solve(self, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt:
        with self._lock:
            if self.stop_after is not None and len(self.calls) >= self.stop_after:
                raise KeyboardInterrupt  # the process dies: nothing catches this
            self.calls.append((task.task_id, attempt, learn))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(0.01)
            for path in task.files:
                self.files_read[path.name] = len(path.read_bytes())
            answer = self.script[task.task_id][attempt]
            if answer == "raise":
                raise RuntimeError("model endpoint went away")
            return Attempt(
                prediction=answer,
                reasoning_trace=f"looked at {task.task_id}",
                elapsed_s=0.5,
                prompt_tokens=10,
                completion_tokens=2,
                cases_used=[attempt],
            )
        finally:
            with self._lock:
                self.active -= 1


def expected_scores(task_ids: list[str]) -> tuple[float, float]:
    """pass@1 and pass@2 from CORRECT, counted directly."""
    pass1 = sum(sum(CORRECT[t]) / 2 for t in task_ids) / len(task_ids)
    pass2 = sum(any(CORRECT[t]) for t in task_ids) / len(task_ids)
    return pass1, pass2


def test_validation_sample_end_to_end(tmp_path: Path) -> None:
    split = load_split(SAMPLE / "validation")
    solver = ScriptedSolver(SCRIPT)
    outcome = run_eval(split, solver, tmp_path / "run", mode="continual", pass_k=2)

    # every attachment was handed to the solver and could be read
    assert set(solver.files_read) == {
        "notes.txt", "fruits.csv", "servers.json", "sales.xlsx", "report.pdf", "memo.docx"
    }  # fmt: skip
    assert all(size > 0 for size in solver.files_read.values())
    # continual: file order, one task after the other, only the last attempt learns
    assert solver.calls == [(t, a, a == 1) for t in SCRIPT for a in (0, 1)]

    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 14
    for record in records:
        assert record["score"] is CORRECT[record["task_id"]][record["attempt"]]
        assert record["level"] == LEVEL[record["task_id"]]
    failed = [r for r in records if r["error"]]
    assert [(r["task_id"], r["attempt"]) for r in failed] == [("v-plain", 0)]
    assert "model endpoint went away" in failed[0]["error"]
    assert failed[0]["learned"] is False

    scores = outcome.scores
    assert (scores["all"].pass_1, scores["all"].pass_k) == pytest.approx(
        expected_scores(list(SCRIPT))
    )
    for level in (1, 2, 3):
        ids = [t for t in SCRIPT if LEVEL[t] == level]
        got = (scores[str(level)].pass_1, scores[str(level)].pass_k)
        assert got == pytest.approx(expected_scores(ids))
    assert scores["all"].errors == 1 and scores["all"].scored == 7
    assert scores["all"].prompt_tokens == 13 * 10

    report = (tmp_path / "run" / "report.md").read_text()
    assert "| all | 7 | 7 | 57.1% | 85.7% | 1 |" in report
    submission = [json.loads(x) for x in outcome.submission.read_text().splitlines()]
    assert [s["task_id"] for s in submission] == list(SCRIPT)
    assert submission[0] == {
        "task_id": "v-txt", "model_answer": "4721", "reasoning_trace": "looked at v-txt"
    }  # fmt: skip
    assert submission[-1]["model_answer"] == ""  # attempt 0 of v-plain failed


def test_hidden_answers_give_a_submission_but_no_score(tmp_path: Path) -> None:
    split = load_split(SAMPLE / "test")
    solver = ScriptedSolver({"t-1": ["8"], "t-2": ["4721"]})
    outcome = run_eval(split, solver, tmp_path / "run", mode="frozen", pass_k=1)
    assert all(r["score"] is None for r in outcome.records)
    assert outcome.scores["all"].scored == 0 and outcome.scores["all"].pass_1 is None
    rows = [json.loads(x) for x in outcome.submission.read_text().splitlines()]
    assert [(r["task_id"], r["model_answer"]) for r in rows] == [("t-1", "8"), ("t-2", "4721")]
    assert "| all | 2 | 0 | — | — |" in outcome.report


def test_crash_then_resume_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    split = load_split(SAMPLE / "validation")
    crashing = ScriptedSolver(SCRIPT, stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_eval(split, crashing, tmp_path / "run", pass_k=2)
    log = ResultLog(tmp_path / "run" / "results.jsonl")
    assert len(log.read()) == 5
    # a torn half line, as if the process died during a write
    with (tmp_path / "run" / "results.jsonl").open("a") as handle:
        handle.write('{"task_id": "v-json", "attem')

    with pytest.raises(InvalidInputError, match="--resume"):
        run_eval(split, ScriptedSolver(SCRIPT), tmp_path / "run", pass_k=2)
    with pytest.raises(InvalidInputError, match="pass_k=2"):
        run_eval(split, ScriptedSolver(SCRIPT), tmp_path / "run", pass_k=3, resume=True)

    resumed = ScriptedSolver(SCRIPT)
    outcome = run_eval(split, resumed, tmp_path / "run", pass_k=2, resume=True)
    assert [c[:2] for c in resumed.calls] == [(t, a) for t in SCRIPT for a in (0, 1)][5:]
    assert outcome.ran == 9 and outcome.skipped == 5
    pairs = [(r["task_id"], r["attempt"]) for r in log.read()]
    assert len(pairs) == len(set(pairs)) == 14
    assert (outcome.scores["all"].pass_1, outcome.scores["all"].pass_k) == pytest.approx(
        expected_scores(list(SCRIPT))
    )


def test_malformed_rows_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "split"
    folder.mkdir()
    rows = [
        {"task_id": "ok", "Question": "2+2?", "Level": 1, "Final answer": "4"},
        {"task_id": "no-file", "Question": "Read it", "Level": 1, "Final answer": "x",
         "file_name": "gone.xlsx"},
        {"task_id": "bad-level", "Question": "q", "Level": "9", "Final answer": "x"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(r) for r in rows) + "\n{not json\n"
    (folder / "metadata.jsonl").write_text(text)
    outcome = run_eval(load_split(folder), ScriptedSolver({"ok": ["4"]}), tmp_path / "run")
    malformed = {r["task_id"]: r["error"] for r in outcome.records if r.get("malformed")}
    assert set(malformed) == {"no-file", "bad-level", "row-4"}
    assert "gone.xlsx" in malformed["no-file"] and "not valid JSON" in malformed["row-4"]
    assert outcome.scores["all"].pass_1 == 1.0 and outcome.scores["all"].malformed == 3
    assert "| all | 4 | 1 | 100.0% |" in outcome.report
    # resuming does not record the problems twice
    again = run_eval(load_split(folder), ScriptedSolver({}), tmp_path / "run", resume=True)
    assert len(again.records) == 4 and again.ran == 0


def test_concurrency_runs_in_parallel_except_in_continual_mode(tmp_path: Path) -> None:
    split = load_split(SAMPLE / "validation")
    parallel = ScriptedSolver(SCRIPT)
    outcome = run_eval(split, parallel, tmp_path / "a", mode="frozen", pass_k=2, concurrency=4)
    assert parallel.max_active > 1
    assert not any(learn for _, _, learn in parallel.calls)
    assert len(outcome.records) == 14
    assert outcome.scores["all"].pass_k == pytest.approx(6 / 7)

    continual = ScriptedSolver(SCRIPT)
    run_eval(split, continual, tmp_path / "b", mode="continual", pass_k=2, concurrency=4)
    assert continual.max_active == 1

    none = ScriptedSolver(SCRIPT)
    run_eval(split, none, tmp_path / "c", mode="none", pass_k=1)
    assert not any(learn for _, _, learn in none.calls)


def test_bad_run_arguments(tmp_path: Path) -> None:
    split = load_split(SAMPLE / "validation")
    with pytest.raises(InvalidInputError, match="pass-k"):
        run_eval(split, ScriptedSolver(SCRIPT), tmp_path / "r", pass_k=0)
    with pytest.raises(InvalidInputError, match="concurrency"):
        run_eval(split, ScriptedSolver(SCRIPT), tmp_path / "r", concurrency=0)
    with pytest.raises(InvalidInputError, match="Unknown mode"):
        run_eval(split, ScriptedSolver(SCRIPT), tmp_path / "r", mode="greedy")  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            draws = list(combinations(outcomes, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(2, 3, 1)


def test_two_processes_append_without_interleaving(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    code = (
        "import sys\n"
        "from memory_agent.evals.results import ResultLog\n"
        "log = ResultLog(sys.argv[1])\n"
        "for i in range(150):\n"
        "    log.append({'task_id': sys.argv[2], 'attempt': i, 'pad': 'x' * 5000})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), name]) for name in ("p", "q")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 300
    records = [json.loads(line) for line in lines]
    assert sorted((r["task_id"], r["attempt"]) for r in records) == sorted(
        (name, i) for name in ("p", "q") for i in range(150)
    )


def test_progress_bar_run_keeps_stdout_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memory_agent.evals.runner import run_with_progress

    split = load_split(SAMPLE / "validation")
    first = run_with_progress(split.select(limit=3), ScriptedSolver(SCRIPT), tmp_path / "r")
    assert first.ran == 3
    resumed = run_with_progress(split, ScriptedSolver(SCRIPT), tmp_path / "r", resume=True)
    assert (resumed.ran, resumed.skipped) == (4, 3)
    assert resumed.scores["all"].pass_1 == pytest.approx(4 / 7)  # attempt 0 column of CORRECT
    assert capsys.readouterr().out == ""
