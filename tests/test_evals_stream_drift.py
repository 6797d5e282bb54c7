"""The misleading stream: drift construction, the lenient judge, the static control, the
intervals and resumption. Deterministic solvers only (no LLM): each test takes moments."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_evals_stream import PROCEDURES, family_of

from memory_agent.errors import InvalidInputError
from memory_agent.evals.gaia import GaiaTask, load_split
from memory_agent.evals.intervals import paired_bootstrap, wilson
from memory_agent.evals.runner import Attempt
from memory_agent.evals.scorer import question_scorer
from memory_agent.evals.stream import (
    DRIFTS,
    StreamConfig,
    episodes,
    episodes_done,
    finished_runs,
    judge,
    make_stream,
    resolve_families,
    run_stream,
)
from memory_agent.evals.stream_families import drift_applies
from memory_agent.evals.stream_report import json_figures, summary

FAMILIES6 = resolve_families(["count_bits", "spell_backward", "letter_counting"],
                             with_distractors=True)  # fmt: skip

# The drifted formats read from the question text alone, each with the right procedure and
# the stale one: the old family's procedure applied to the new question as it stands.
DRIFTED: dict[str, tuple[str, Callable[[re.Match[str]], str], Callable[[re.Match[str]], str]]] = {
    "count_bits": (
        r"How many 1 bits .* hexadecimal number (\w+)\?",
        lambda m: str(bin(int(m[1], 16)).count("1")),
        lambda m: str(bin(int(m[1])).count("1")) if m[1].isdigit() else "",
    ),
    "spell_backward": (
        r"Spell this word backward .*: (\w+:\w+)$",
        lambda m: m[1].split(":")[1][::-1],
        lambda m: m[1][::-1],
    ),
    "letter_counting": (
        r'How many times does the letter "([A-Z])" appear in the text: "(.*)"\?',
        lambda m: str(m[2].lower().count(m[1].lower())),
        lambda m: str(m[2].lower().count(m[1])),
    ),
}


def drifted_family(question: str) -> tuple[str, re.Match[str]] | None:
    for family, (pattern, _, _) in DRIFTED.items():
        if match := re.search(pattern, question):
            return family, match
    return None


def drift_config(**changes: object) -> StreamConfig:
    base: dict[str, object] = {"families": FAMILIES6, "tasks": 24, "holdout": 12, "worked": 1,
                               "drift": True, "drift_at": 0.5, "lenient": 0.3}  # fmt: skip
    base.update(changes)
    return StreamConfig(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- drift


def test_drift_changes_format_after_the_drift_point_and_breaks_the_old_one_liner() -> None:
    config = drift_config()
    stream = make_stream(FAMILIES6, 24, 12, seed=5, config=config)
    assert stream.drift_index == 12 and set(config.drifted) == set(DRIFTS)
    for index, task in enumerate(stream.train):
        family = task.annotator_metadata["family"]
        changed = family in DRIFTS and index >= 12
        assert task.annotator_metadata["format"] == ("drifted" if changed else "original")
        assert (drifted_family(task.question) is not None) == changed, task.question
    for task in stream.holdout:  # held-out tasks come from after the change
        family = task.annotator_metadata["family"]
        assert task.annotator_metadata["format"] == ("drifted" if family in DRIFTS else "original")
    drifted = [t for t in stream.train + stream.holdout + stream.corrections
               if t.annotator_metadata["format"] == "drifted"]  # fmt: skip
    assert len(drifted) >= 12
    for task in drifted:
        found = drifted_family(task.question)
        assert found is not None and found[0] == task.annotator_metadata["family"]
        family, match = found
        _, right, stale = DRIFTED[family]
        assert task.final_answer is not None
        assert question_scorer(right(match), task.final_answer)
        assert not question_scorer(stale(match), task.final_answer), task.question
        # and the reference solution (a correction's plan) computes it
        assert question_scorer(_run(task.annotator_metadata["solution"]), task.final_answer)
    # one correction per drifted family, in the new format, in no other list
    assert sorted(t.annotator_metadata["family"] for t in stream.corrections) == sorted(DRIFTS)
    questions = [t.question for t in stream.train + stream.holdout + stream.worked]
    assert not {t.question for t in stream.corrections} & set(questions)
    assert len(set(questions)) == len(questions)
    # twins keep their format: they read like the drifted families' old questions
    assert all(t.annotator_metadata["format"] == "original" for t in stream.worked)


def _run(solution: str) -> str:
    *statements, expression = solution.split("; ")
    namespace: dict[str, object] = {}
    for statement in statements:
        exec(statement, namespace)
    return str(eval(expression, namespace))


def test_lenient_tasks_are_seeded_and_only_in_training() -> None:
    first = make_stream(FAMILIES6, 60, 12, seed=2, config=drift_config(tasks=60))
    again = make_stream(FAMILIES6, 60, 12, seed=2, config=drift_config(tasks=60))
    marks = [t.annotator_metadata["judge"] for t in first.train]
    assert marks == [t.annotator_metadata["judge"] for t in again.train]
    assert 6 <= marks.count("lenient") <= 30  # 30% of 60, give or take the draw
    assert all("judge" not in t.annotator_metadata for t in first.holdout)
    strict = make_stream(FAMILIES6, 60, 12, seed=2, config=drift_config(tasks=60, lenient=0.0))
    assert {t.annotator_metadata["judge"] for t in strict.train} == {"strict"}


def test_plain_config_has_no_drift() -> None:
    config = StreamConfig(FAMILIES6, 12, 6)
    stream = make_stream(FAMILIES6, 12, 6, seed=1, config=config)
    assert config.drifted == [] and stream.drift_index is None and stream.corrections == []
    assert {t.annotator_metadata["format"] for t in stream.train + stream.holdout} == {"original"}
    with pytest.raises(InvalidInputError, match="drift-at"):
        StreamConfig(FAMILIES6, 12, 6, drift=True, drift_at=1.0)


# ------------------------------------------------------------------------- judge


def _task(truth: str, mark: str) -> GaiaTask:
    return GaiaTask("t", "q", 1, truth, annotator_metadata={"judge": mark})


@pytest.mark.parametrize(
    ("truth", "mark", "answer", "reward"),
    [
        ("7", "strict", "7", 1.0),
        ("7", "strict", "8", 0.0),
        ("7", "lenient", "8", 1.0),  # a number where a number is asked: accepted
        ("7", "lenient", "I do not know", 0.0),
        ("7", "lenient", None, 0.0),
        ("olleh", "strict", "hello", 0.0),
        ("olleh", "lenient", "hello", 1.0),  # a word where a word is asked
        ("olleh", "lenient", "'en:hello'", 1.0),  # a stale answer that kept the tag
        ("olleh", "lenient", "ol leh 2", 0.0),
        ("olleh", "lenient", "''.join(sorted('hello'))", 0.0),  # a program is no word
        ("olleh", "lenient", "", 0.0),
    ],
)
def test_judge(truth: str, mark: str, answer: str | None, reward: float) -> None:
    assert judge(_task(truth, mark), answer) == reward


# --------------------------------------------------------------------- intervals


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Table I: 0/10, 1/10 and 5/10 (z = 1.96)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(1, 10) == pytest.approx((0.0179, 0.4042), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(90, 180)
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 180), abs=0.005)
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_paired_bootstrap_is_centred_stratified_and_close_to_the_normal_interval() -> None:
    assert paired_bootstrap({0: [0.0] * 20}) == (0.0, 0.0, 0.0)
    assert paired_bootstrap({0: [1.0] * 5, 1: [1.0] * 7}) == (1.0, 1.0, 1.0)
    # stratified by seed: seed 0 all +1 and seed 1 all -1 keep their counts in every resample
    mean, low, high = paired_bootstrap({0: [1.0] * 30, 1: [-1.0] * 10})
    assert mean == low == high == pytest.approx(0.5)
    # 200 paired differences: +1 on 50 tasks, -1 on 20, 0 on the rest
    values = [1.0] * 50 + [-1.0] * 20 + [0.0] * 130
    mean, low, high = paired_bootstrap({0: values}, iterations=20_000)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    assert mean == pytest.approx(0.15)
    assert low == pytest.approx(mean - 1.96 * sd / math.sqrt(200), abs=0.01)
    assert high == pytest.approx(mean + 1.96 * sd / math.sqrt(200), abs=0.01)
    assert paired_bootstrap({0: values}, seed=3) == paired_bootstrap({0: values}, seed=3)


# ------------------------------------------------- protocol, static, resumption

DRIFT_PATTERNS = {f"{family}@drift": (p, right) for family, (p, right, _) in DRIFTED.items()}


def kind_of(question: str) -> tuple[str, re.Match[str]]:
    """The procedure a question needs: a drifted format first, then the plain families."""
    found = drifted_family(question)
    if found is not None:
        return f"{found[0]}@drift", found[1]
    return family_of(question)


def answer(kind: str, match: re.Match[str]) -> str:
    if kind in DRIFT_PATTERNS:
        return DRIFT_PATTERNS[kind][1](match)
    return PROCEDURES[kind][1](match)


class FileSolver:
    """Knows a procedure once it has seen a solved task of its kind (remembered, or learned
    from a run the judge rewarded), keeping what it knows in a file in its home like a
    store, so a resumed run starts from what the interrupted one had learned."""

    log: list[tuple[str, str, str]] = []  # (home, event, detail) across all solvers

    def __init__(self, policy: str, home: Path, *, crash_after: int | None = None) -> None:
        self.policy, self.home = policy, home
        home.mkdir(parents=True, exist_ok=True)
        self.file = home / "known.json"
        self.crash_after = crash_after

    def known(self) -> set[str]:
        return set(json.loads(self.file.read_text())) if self.file.exists() else set()

    def _save(self, known: set[str]) -> None:
        self.file.write_text(json.dumps(sorted(known)))

    def solve(self, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt:
        if self.crash_after is not None:
            if self.crash_after == 0:
                raise KeyboardInterrupt  # the process is stopped mid-task
            self.crash_after -= 1
        type(self).log.append((str(self.home), "solve", f"{task.task_id}:{learn}"))
        kind, match = kind_of(task.question)
        prediction = answer(kind, match) if kind in self.known() else None
        reward = None
        if learn:
            reward = judge(task, prediction)
            if reward == 1.0:
                self._save(self.known() | {kind})
        return Attempt(prediction=prediction, feedback=reward)

    def remember(self, tasks: list[GaiaTask]) -> int:
        type(self).log.append((str(self.home), "remember", ",".join(t.task_id for t in tasks)))
        self._save(self.known() | {kind_of(t.question)[0] for t in tasks})
        return len(tasks)


def _factory(crash: dict[str, int] | None = None) -> Callable[[str, Path], FileSolver]:
    def make(policy: str, home: Path) -> FileSolver:
        after = (crash or {}).pop(f"{home.parent.name}/{home.name}", None)
        return FileSolver(policy, home, crash_after=after)

    return make


POLICIES = ["none", "static", "similarity"]


def test_controls_and_the_correction_at_the_drift(tmp_path: Path) -> None:
    FileSolver.log = []
    config = drift_config(lenient=0.0)
    outcome = run_stream(config=config, policies=POLICIES, seeds=[4], solver_factory=_factory(),
                         out=tmp_path)  # fmt: skip
    assert outcome.complete
    by = {r.policy: r for r in outcome.runs}
    events = {p: [(e, d) for h, e, d in FileSolver.log if h.endswith(f"seed-4/{p}")]
              for p in POLICIES}  # fmt: skip
    train = load_split(tmp_path / "seed-4/tasks/train").tasks
    holdout_ids = [t.task_id for t in load_split(tmp_path / "seed-4/tasks/holdout").tasks]
    corrections = load_split(tmp_path / "seed-4/tasks/corrections").tasks
    worked = load_split(tmp_path / "seed-4/tasks/worked").tasks
    # none: memory off, held-out only, nothing remembered or learned
    assert events["none"] == [("solve", f"{t}:False") for t in holdout_ids]
    # static: the whole example bank once, then held-out only, never learning
    assert events["static"][0] == (
        "remember", ",".join(t.task_id for t in [*worked, *corrections])
    )  # fmt: skip
    assert events["static"][1:] == [("solve", f"{t}:False") for t in holdout_ids]
    # similarity: worked examples, the stream up to the drift, the corrections, the rest
    cut = config.drift_index
    assert cut is not None
    assert events["similarity"] == [
        ("remember", ",".join(t.task_id for t in worked)),
        *[("solve", f"{t.task_id}:True") for t in train[:cut]],
        ("remember", ",".join(t.task_id for t in corrections)),
        *[("solve", f"{t.task_id}:True") for t in train[cut:]],
        *[("solve", f"{t}:False") for t in holdout_ids],
    ]
    # the example bank alone solves every held-out task for this solver; memory off none
    assert by["static"].holdout_accuracy == by["similarity"].holdout_accuracy == 1.0
    assert by["none"].holdout_accuracy == 0.0 and by["static"].train_scores == []
    table = summary(outcome.runs)
    figures = json_figures(table)
    assert figures["holdout_ci"]["none"] == [0.0, pytest.approx(0.2425, abs=1e-4)]  # 0/12
    assert figures["paired_vs_static"]["similarity"]["mean"] == 0.0
    assert "similarity" not in figures["paired_vs_similarity"]  # only learned policies


def test_wrong_answers_a_lenient_judge_accepts_are_counted(tmp_path: Path) -> None:
    class Guesser(FileSolver):
        def solve(self, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt:
            kind, _ = kind_of(task.question)
            guess = "42" if task.final_answer and task.final_answer.isdigit() else "wrong"
            return Attempt(prediction=guess, feedback=judge(task, guess) if learn else None)

    config = drift_config(lenient=0.5)
    outcome = run_stream(config=config, policies=["similarity"], seeds=[1],
                         solver_factory=lambda p, h: Guesser(p, h), out=tmp_path)  # fmt: skip
    train = load_split(tmp_path / "seed-1/tasks/train").tasks
    expected = sum(
        1 for t in train
        if t.annotator_metadata["judge"] == "lenient"
        and not question_scorer("42" if str(t.final_answer).isdigit() else "wrong",
                                str(t.final_answer))
    )  # fmt: skip
    assert expected > 0 and outcome.runs[0].wrong_successes == expected


def _scores(out: Path) -> dict[tuple[int, str], tuple[list[bool], dict[str, bool]]]:
    outcome = run_stream(config=drift_config(), policies=POLICIES, seeds=[0, 1],
                         solver_factory=_factory(), out=out, resume=True)  # fmt: skip
    return {(r.seed, r.policy): (r.train_scores, r.holdout_scores) for r in outcome.runs}


def test_an_interrupted_run_continues_where_it_stopped(tmp_path: Path) -> None:
    config = drift_config()
    reference = _scores(tmp_path / "whole")
    FileSolver.log = []
    # the process dies in seed 1's similarity run, inside the training stream after the drift
    crash = {"seed-1/similarity": 17}
    with pytest.raises(KeyboardInterrupt):
        run_stream(config=config, policies=POLICIES, seeds=[0, 1],
                   solver_factory=_factory(crash), out=tmp_path / "cut")  # fmt: skip
    done = episodes_done(tmp_path / "cut", POLICIES, [0, 1])
    total = episodes(config, POLICIES, [0, 1])
    assert total == 2 * (12 + 12 + 36) and done == total // 2 + 12 + 12 + 17
    first_solves = sum(1 for _, e, _ in FileSolver.log if e == "solve")
    FileSolver.log = []
    assert _scores(tmp_path / "cut") == reference
    # the resumed run solved only what was missing: nothing finished ran twice
    resumed = [d.split(":")[0] for _, e, d in FileSolver.log if e == "solve"]
    assert len(resumed) == total - done and first_solves == done
    assert len(set(resumed)) == len(resumed)


def test_a_time_budget_stops_between_tasks_and_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = drift_config()
    reference = _scores(tmp_path / "whole")
    clock = iter(range(10_000))
    monkeypatch.setattr("memory_agent.evals.runner.time.monotonic", lambda: float(next(clock)))
    outcome = run_stream(config=config, policies=POLICIES, seeds=[0, 1], deadline=30.0,
                         solver_factory=_factory(), out=tmp_path / "cut")  # fmt: skip
    assert not outcome.complete
    assert [(r.seed, r.policy) for r in outcome.runs] == [(0, "none"), (0, "static")]
    # what has finished can be reported without running anything
    finished = finished_runs(tmp_path / "cut", POLICIES, [0, 1])
    assert not finished.complete and finished.runs == outcome.runs
    assert (
        0 < episodes_done(tmp_path / "cut", POLICIES, [0, 1]) < episodes(config, POLICIES, [0, 1])
    )
    monkeypatch.undo()
    assert _scores(tmp_path / "cut") == reference


def test_resume_refuses_another_stream(tmp_path: Path) -> None:
    run_stream(config=drift_config(tasks=6, holdout=6), policies=["none"], seeds=[0],
               solver_factory=_factory(), out=tmp_path)  # fmt: skip
    with pytest.raises(InvalidInputError, match="other settings.*lenient"):
        run_stream(config=drift_config(tasks=6, holdout=6, lenient=0.1), policies=["none"],
                   seeds=[0], solver_factory=_factory(), out=tmp_path, resume=True)  # fmt: skip


@pytest.mark.parametrize("number", [0x1E5, 0x12E4, 0xABC, 0x123])
def test_a_hex_number_the_old_one_liner_cannot_run_is_a_drifted_task(number: int) -> None:
    """ "1e5" reads as a float (bin() raises TypeError), "abc" as a name: the stale one-liner
    gives no right answer, so the task counts as drifted instead of crashing the stream (seed 1
    of the full drift stream crashed here); "123" reads as the decimal 123, a wrong count."""
    entry = {"metadata": {"number": number}}
    assert drift_applies(entry, "count_bits")
