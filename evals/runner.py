"""Run a GAIA split through a solver: attempts, scoring, the results file, resume, report.

Modes:
- `continual` (memory on, the paper's protocol): tasks run one after the other in file
  order and each finished task is learned (written to memory, policy updated) before the
  next starts. With k attempts, all k see the memory as it was before the task and only
  the last one learns, so a task never sees its own answer. Always sequential.
- `frozen`: memory is read but never written (held-out evaluation); may run concurrently.
- `none`: memory off (the baseline); may run concurrently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from memory_agent.errors import InvalidInputError
from memory_agent.evals.gaia import GaiaSplit, GaiaTask
from memory_agent.evals.metrics import Score, markdown_report, summarize, write_submission
from memory_agent.evals.results import RESULTS_NAME, ResultLog, write_run_info
from memory_agent.scoring import question_scorer

Mode = Literal["continual", "frozen", "none"]
MODES: tuple[Mode, ...] = ("continual", "frozen", "none")


@dataclass(frozen=True)
class Attempt:
    """What a solver returns for one attempt at one task."""

    prediction: str | None
    reasoning_trace: str = ""
    elapsed_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cases_shown: list[int] = field(default_factory=list)
    cases_used: list[int] = field(default_factory=list)
    citation: str = "none"
    run_id: str | None = None
    error: str | None = None
    feedback: float | None = None  # the reward a judge gave the agent (None: ground truth)


class Solver(Protocol):
    """Answers one task. `learn` asks it to write the episode to memory afterwards."""

    def solve(self, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt: ...


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    records: list[dict[str, Any]]
    scores: dict[str, Score]
    report: str
    submission: Path
    ran: int  # attempts run now (resume skips the others)
    skipped: int
    complete: bool = True  # False: stopped at the deadline, some attempts never ran


ProgressHook = Callable[[dict[str, Any]], None]


def attempt_record(
    task: GaiaTask, attempt: int, result: Attempt, *, learned: bool
) -> dict[str, Any]:
    """The results-file line for one attempt; the score uses the official GAIA rules."""
    truth = task.final_answer
    score = None if truth is None else question_scorer(result.prediction, truth)
    return {
        "task_id": task.task_id,
        "attempt": attempt,
        "level": task.level,
        "question": task.question,
        "prediction": result.prediction,
        "truth": task.final_answer,
        "score": score,
        "elapsed_s": round(result.elapsed_s, 3),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cases_shown": result.cases_shown,
        "cases_used": result.cases_used,
        "citation": result.citation,
        "run_id": result.run_id,
        "learned": learned,
        "feedback": result.feedback,
        "error": result.error,
        "reasoning_trace": result.reasoning_trace,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def safe_solve(solver: Solver, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt:
    """The solver's attempt; an exception becomes an error record so the run goes on."""
    started = time.perf_counter()
    try:
        return solver.solve(task, attempt, learn=learn)
    except Exception as exc:  # one bad task must not end the run
        return Attempt(
            prediction=None,
            elapsed_s=time.perf_counter() - started,
            error=f"{type(exc).__name__}: {exc}",
        )


def run_eval(
    split: GaiaSplit,
    solver: Solver,
    run_dir: Path,
    *,
    mode: Mode = "continual",
    pass_k: int = 1,
    concurrency: int = 1,
    resume: bool = False,
    info: dict[str, Any] | None = None,
    progress: ProgressHook | None = None,
    title: str | None = None,
    deadline: float | None = None,
) -> RunOutcome:
    """Run every task of `split` `pass_k` times, appending each attempt to the results file.

    Writes `results.jsonl`, `report.md` and `submission.jsonl` in `run_dir`. With a
    `deadline` (a `time.monotonic()` value) no attempt starts after it; the outcome then
    says `complete=False` and a resumed run continues with the rest.
    """
    if mode not in MODES:
        raise InvalidInputError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    if pass_k < 1:
        raise InvalidInputError("--pass-k must be at least 1.")
    if concurrency < 1:
        raise InvalidInputError("--concurrency must be at least 1.")
    if mode == "continual":
        concurrency = 1  # each task must be learned before the next one starts
    run_info = {
        "mode": mode,
        "pass_k": pass_k,
        "metadata_file": str(split.metadata_file),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(info or {}),
    }
    run_info = write_run_info(run_dir, run_info, resume=resume)
    log = ResultLog(run_dir / RESULTS_NAME)
    done = log.finished()

    for problem in split.problems:
        task_id = problem.task_id or f"row-{problem.row}"
        if (task_id, 0) not in done:
            log.append(
                {
                    "task_id": task_id,
                    "attempt": 0,
                    "level": None,
                    "malformed": True,
                    "prediction": None,
                    "truth": None,
                    "score": None,
                    "error": problem.message,
                }
            )

    jobs = [
        (task, attempt)
        for task in split.tasks
        for attempt in range(pass_k)
        if (task.task_id, attempt) not in done
    ]
    skipped = len(split.tasks) * pass_k - len(jobs)

    def run_one(task: GaiaTask, attempt: int) -> dict[str, Any]:
        learn = mode == "continual" and attempt == pass_k - 1
        result = safe_solve(solver, task, attempt, learn=learn)
        record = attempt_record(task, attempt, result, learned=learn and result.error is None)
        log.append(record)
        if progress is not None:
            progress(record)
        return record

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    ran = 0
    if concurrency == 1:
        for task, attempt in jobs:
            if out_of_time():
                break
            run_one(task, attempt)
            ran += 1
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:

            def guarded(task: GaiaTask, attempt: int) -> bool:
                if out_of_time():
                    return False
                run_one(task, attempt)
                return True

            futures = [pool.submit(guarded, task, attempt) for task, attempt in jobs]
            for future in as_completed(futures):
                ran += future.result()

    return finish_run(
        run_dir, run_info, pass_k, ran=ran, skipped=skipped, title=title,
        complete=ran == len(jobs),
    )  # fmt: skip


def finish_run(
    run_dir: Path,
    info: dict[str, Any],
    pass_k: int,
    *,
    ran: int = 0,
    skipped: int = 0,
    title: str | None = None,
    complete: bool = True,
) -> RunOutcome:
    """Score what the results file holds and write the report and the submission."""
    records = ResultLog(run_dir / RESULTS_NAME).read()
    scores = summarize(records, pass_k)
    report = markdown_report(title or f"Evaluation run {run_dir.name}", info, scores, pass_k)
    (run_dir / "report.md").write_text(report, encoding="utf-8")
    submission = run_dir / "submission.jsonl"
    write_submission(submission, records)
    return RunOutcome(run_dir, records, scores, report, submission, ran, skipped, complete)


def run_with_progress(
    split: GaiaSplit, solver: Solver, run_dir: Path, *, pass_k: int = 1, **kwargs: Any
) -> RunOutcome:
    """`run_eval` with a rich progress bar showing the running accuracy."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    total = len(split.tasks) * pass_k
    correct = 0
    scored = 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),  # stdout stays clean for --json and the report
    ) as bar:
        bar_id = bar.add_task("attempts", total=total)
        if kwargs.get("resume"):
            wanted = {(t.task_id, a) for t in split.tasks for a in range(pass_k)}
            already = wanted & ResultLog(run_dir / RESULTS_NAME).finished()
            bar.update(bar_id, completed=len(already))

        def hook(record: dict[str, Any]) -> None:
            nonlocal correct, scored
            if record.get("score") is not None:
                scored += 1
                correct += bool(record["score"])
            accuracy = f" {correct}/{scored} correct" if scored else ""
            bar.update(bar_id, advance=1, description=f"attempts{accuracy}")

        return run_eval(split, solver, run_dir, pass_k=pass_k, progress=hook, **kwargs)


def default_run_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
