"""The continual-learning stream: task generation, the protocol, the table and the plot."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from memory_agent.errors import InvalidInputError
from memory_agent.evals.gaia import GaiaTask, load_split
from memory_agent.evals.runner import Attempt
from memory_agent.evals.scorer import question_scorer
from memory_agent.evals.stream import (
    FAMILIES,
    StreamConfig,
    learning_curve,
    make_stream,
    make_tasks,
    resolve_families,
    run_stream,
)
from memory_agent.evals.stream_report import markdown_table, summary

# How each family is solved, written from the question text alone (independent of stream.py).
PROCEDURES: dict[str, tuple[str, Callable[[re.Match[str]], str]]] = {
    "count_bits": (r"How many 1 bits .* number (\d+)\?", lambda m: str(bin(int(m[1])).count("1"))),
    "count_zero_bits": (
        r"How many 0 bits .* number (\d+)\?",
        lambda m: str(bin(int(m[1]))[2:].count("0")),
    ),
    "spell_backward": (r"Spell this word backward .*: (\w+)$", lambda m: m[1][::-1]),
    "sort_letters": (r"alphabetical order .*: (\w+)$", lambda m: "".join(sorted(m[1]))),
    "letter_counting": (
        r'How many times does the letter "(\w)" appear in the text: "(.*)"\?',
        lambda m: str(m[2].lower().count(m[1])),
    ),
    "words_with_letter": (
        r'How many words contain the letter "(\w)" in the text: "(.*)"\?',
        lambda m: str(sum(m[1] in w.lower() for w in m[2].split())),
    ),
    "gcd": (r"Greatest Common Divisor", lambda m: ""),
    "lcm": (r"Least Common Multiple", lambda m: ""),
}


def family_of(question: str) -> tuple[str, re.Match[str]]:
    for family, (pattern, _) in PROCEDURES.items():
        if match := re.search(pattern, question):
            return family, match
    raise AssertionError(f"no procedure reads {question!r}")


class LearningSolver:
    """Solves a family only after it has learned one task of it; `learn` is how it learns."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.known: set[str] = set()
        self.calls: list[tuple[str, bool]] = []
        self.closed = False
        self.remembered: list[str] = []

    def solve(self, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt:
        self.calls.append((task.task_id, learn))
        family, match = family_of(task.question)
        answer = PROCEDURES[family][1](match) if family in self.known else None
        if learn and self.policy != "none":
            self.known.add(family)
        return Attempt(prediction=answer)

    def remember(self, tasks: list[GaiaTask]) -> int:
        self.remembered = [t.task_id for t in tasks]
        self.known |= {family_of(t.question)[0] for t in tasks}
        return len(tasks)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ("gcd", "lcm")])
def test_generated_answers_match_an_independent_procedure(family: str) -> None:
    tasks = make_tasks([family], 12, seed=5)
    assert {t.annotator_metadata["family"] for t in tasks} == {family}
    for task in tasks:
        found, match = family_of(task.question)
        assert found == family
        assert task.final_answer is not None
        assert question_scorer(PROCEDURES[family][1](match), task.final_answer)


def test_streams_are_seeded_balanced_and_holdout_is_disjoint() -> None:
    families = resolve_families(["count_bits", "spell_backward"], with_distractors=True)
    assert families == ["count_bits", "count_zero_bits", "spell_backward", "sort_letters"]
    first = make_stream(families, 16, 8, seed=3, worked_examples=2)
    train, held, worked = first.train, first.holdout, first.worked
    again = make_stream(families, 16, 8, seed=3).train
    other = make_stream(families, 16, 8, seed=4).train
    assert first.corrections == [] and first.drift_index is None
    assert [t.question for t in train] == [t.question for t in again]
    assert [t.question for t in train] != [t.question for t in other]
    assert len(held) == 8 and not {t.question for t in held} & {t.question for t in train}
    assert [t.annotator_metadata["family"] for t in worked] == [f for f in families for _ in "ab"]
    assert not {t.question for t in worked} & {t.question for t in train + held}
    counts = {f: sum(t.annotator_metadata["family"] == f for t in train) for f in families}
    assert counts == dict.fromkeys(families, 4)
    with pytest.raises(InvalidInputError, match="Unknown family 'bogus'"):
        resolve_families(["bogus"])


def test_protocol_train_continual_then_frozen_holdout(tmp_path: Path) -> None:
    solvers: dict[tuple[str, str], LearningSolver] = {}

    def factory(policy: str, home: Path) -> LearningSolver:
        solvers[(policy, home.parent.name)] = LearningSolver(policy)
        return solvers[(policy, home.parent.name)]

    families = list(FAMILIES)[:4]
    runs = run_stream(
        config=StreamConfig(families, tasks=8, holdout=6, worked=0),
        policies=["none", "similarity"], seeds=[1, 2], solver_factory=factory, out=tmp_path,
    ).runs  # fmt: skip
    assert [(r.policy, r.seed) for r in runs] == [
        ("none", 1), ("similarity", 1), ("none", 2), ("similarity", 2)
    ]  # fmt: skip
    for (policy, _), solver in solvers.items():
        assert solver.closed
        train_calls = [c for c in solver.calls if c[0].startswith("train")]
        held_calls = [c for c in solver.calls if c[0].startswith("holdout")]
        assert len(held_calls) == 6 and not any(learn for _, learn in held_calls)
        if policy == "none":
            assert train_calls == []  # the baseline cannot learn: held-out only
        else:
            assert len(train_calls) == 8 and all(learn for _, learn in train_calls)
    by = {(r.policy, r.seed): r for r in runs}
    for seed in (1, 2):
        assert by[("none", seed)].holdout_accuracy == 0.0
        assert by[("similarity", seed)].holdout_accuracy == 1.0
        # each family is missed the first time it appears in the stream, then solved
        train = load_split(tmp_path / f"seed-{seed}" / "tasks" / "train").tasks
        first_seen = [
            i for i, t in enumerate(train)
            if t.annotator_metadata["family"] not in
            {u.annotator_metadata["family"] for u in train[:i]}
        ]  # fmt: skip
        assert [not ok for ok in by[("similarity", seed)].train_scores] == [
            i in first_seen for i in range(len(train))
        ]
    table = summary(runs)
    assert table["none"]["holdout"] == 0.0 and table["similarity"]["holdout"] == 1.0
    assert table["similarity"]["holdout_std"] == 0.0 and table["none"]["train"] is None
    text = markdown_table(table)
    # 12 of 12 held-out right: the Wilson interval is [75.8, 100]
    assert "| similarity | 1,2 | 100.0% ± 0.0 | [75.8, 100.0] | — | — | 50.0% | 0 |" in text
    png = learning_curve(runs, tmp_path / "curve.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_worked_examples_reach_memory_policies_only(tmp_path: Path) -> None:
    solvers: dict[str, LearningSolver] = {}

    def factory(policy: str, home: Path) -> LearningSolver:
        solvers[policy] = LearningSolver(policy)
        return solvers[policy]

    runs = run_stream(
        config=StreamConfig(["count_bits", "spell_backward"], tasks=6, holdout=4, worked=1),
        policies=["none", "similarity"], seeds=[7], solver_factory=factory, out=tmp_path,
    ).runs  # fmt: skip
    assert solvers["none"].remembered == []
    assert [t.split("-")[-1] for t in solvers["similarity"].remembered] == [
        "count_bits", "spell_backward"
    ]  # fmt: skip
    by = {r.policy: r for r in runs}
    assert all(by["similarity"].train_scores) and by["similarity"].holdout_accuracy == 1.0
    assert by["none"].holdout_accuracy == 0.0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reference_solutions_compute_the_answer(family: str) -> None:
    for task in make_tasks([family], 5, seed=11):
        *statements, expression = str(task.annotator_metadata["solution"]).split("; ")
        namespace: dict[str, object] = {}
        for statement in statements:
            exec(statement, namespace)
        value = eval(expression, namespace)
        assert task.final_answer is not None
        assert question_scorer(str(value), task.final_answer)
