"""The continual-learning stream: seeded reasoning-gym tasks in GAIA format.

Families are chosen so that a stored case's plan (the Python a tool should run) carries over
to new instances. Each has a distractor twin whose question reads almost the same but needs
a different procedure (1 bits vs 0 bits, spelled backward vs letters sorted, ...): a policy
that only looks at similarity keeps showing the wrong worked example, a learned one can
learn not to.

Protocol per policy and seed: a training stream (memory grows, policy learns), then a
held-out set of new instances with memory frozen. `none` (memory off) is the baseline and
only runs the held-out set, since it cannot learn from the stream.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from memory_agent.errors import InvalidInputError
from memory_agent.evals.extras import eval_extra
from memory_agent.evals.gaia import GaiaTask, load_split, write_metadata
from memory_agent.evals.runner import Solver, run_eval

HOLDOUT_SEED_OFFSET = 1_000_003  # held-out instances come from a disjoint generator seed
WORKED_SEED_OFFSET = 2_000_003  # and so do the worked examples stored before the stream


@dataclass(frozen=True)
class Family:
    """A kind of task: a reasoning-gym dataset and how an entry becomes (question, answer)."""

    name: str
    source: str  # the reasoning-gym dataset it draws from
    build: Callable[[dict[str, Any]], tuple[str, str]]
    solution: Callable[[dict[str, Any]], str]  # one line of Python that computes the answer
    twin: str | None = None  # the family whose questions read almost the same


def _as_given(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry["question"]), str(entry["answer"])


def _zero_bits(entry: dict[str, Any]) -> tuple[str, str]:
    number = int(entry["metadata"]["number"])
    question = f"How many 0 bits are there in the binary representation of the number {number}?"
    return question, str(bin(number)[2:].count("0"))


def _sorted_letters(entry: dict[str, Any]) -> tuple[str, str]:
    word = str(entry["metadata"]["word"])
    question = (
        f"Spell this word with its letters in alphabetical order (example: sun -> nsu): {word}"
    )
    return question, "".join(sorted(word))


def _words_with_letter(entry: dict[str, Any]) -> tuple[str, str]:
    letter = str(entry["metadata"]["target_letter"])
    words = [str(w) for w in entry["metadata"]["span"]]
    question = f'How many words contain the letter "{letter}" in the text: "{" ".join(words)}"?'
    return question, str(sum(1 for w in words if letter in w.lower()))


def _number(entry: dict[str, Any]) -> int:
    return int(entry["metadata"]["number"])


def _word(entry: dict[str, Any]) -> str:
    return repr(str(entry["metadata"]["word"]))


def _letter_code(entry: dict[str, Any], template: str) -> str:
    meta = entry["metadata"]
    text = " ".join(str(w) for w in meta["span"])
    return template.format(letter=repr(str(meta["target_letter"])), text=repr(text))


def _numbers(entry: dict[str, Any]) -> str:
    return ", ".join(str(int(n)) for n in entry["metadata"]["numbers"])


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("count_bits", "count_bits", _as_given,
               lambda e: f"bin({_number(e)}).count('1')", twin="count_zero_bits"),
        Family("count_zero_bits", "count_bits", _zero_bits,
               lambda e: f"bin({_number(e)})[2:].count('0')", twin="count_bits"),
        Family("spell_backward", "spell_backward", _as_given,
               lambda e: f"{_word(e)}[::-1]", twin="sort_letters"),
        Family("sort_letters", "spell_backward", _sorted_letters,
               lambda e: f"''.join(sorted({_word(e)}))", twin="spell_backward"),
        Family("letter_counting", "letter_counting", _as_given,
               lambda e: _letter_code(e, "{text}.lower().count({letter})"),
               twin="words_with_letter"),
        Family("words_with_letter", "letter_counting", _words_with_letter,
               lambda e: _letter_code(e, "sum({letter} in w.lower() for w in {text}.split())"),
               twin="letter_counting"),
        Family("gcd", "gcd", _as_given,
               lambda e: f"import math; math.gcd({_numbers(e)})", twin="lcm"),
        Family("lcm", "lcm", _as_given,
               lambda e: f"import math; math.lcm({_numbers(e)})", twin="gcd"),
    )
}  # fmt: skip
DEFAULT_FAMILIES = ("count_bits", "spell_backward", "letter_counting")


def resolve_families(names: Sequence[str], *, with_distractors: bool = False) -> list[str]:
    """Known family names in the given order, each followed by its twin when asked."""
    chosen: list[str] = []
    for name in names:
        if name not in FAMILIES:
            raise InvalidInputError(f"Unknown family {name!r}; choose from: {', '.join(FAMILIES)}.")
        twin = FAMILIES[name].twin
        for item in (name, twin if with_distractors else None):
            if item and item not in chosen:
                chosen.append(item)
    if not chosen:
        raise InvalidInputError("Give at least one family (--families count_bits,...).")
    return chosen


def _family_seed(seed: int, family: str) -> int:
    # stable across runs and Python versions (str hashes are salted per process)
    return seed * 1_000 + sum(ord(c) * (i + 1) for i, c in enumerate(family)) % 997


def make_tasks(
    families: Sequence[str], count: int, seed: int, *, prefix: str = "train"
) -> list[GaiaTask]:
    """`count` tasks cycling through `families` in a seeded shuffled order, as GAIA tasks."""
    with eval_extra("The reasoning-gym task stream"):
        import reasoning_gym

    if count < 1:
        raise InvalidInputError("A stream needs at least one task.")
    rng = random.Random(seed)
    per_family = -(-count // len(families))
    entries = {
        name: list(
            reasoning_gym.create_dataset(
                FAMILIES[name].source, size=per_family, seed=_family_seed(seed, name)
            )
        )
        for name in families
    }
    order: list[str] = []
    while len(order) < count:
        cycle = list(families)
        rng.shuffle(cycle)
        order.extend(cycle)
    used = dict.fromkeys(families, 0)
    tasks: list[GaiaTask] = []
    for index, name in enumerate(order[:count]):
        entry = entries[name][used[name]]
        used[name] += 1
        question, answer = FAMILIES[name].build(entry)
        tasks.append(
            GaiaTask(
                task_id=f"{prefix}-{seed}-{index:04d}-{name}",
                question=question,
                level=1,
                final_answer=answer,
                annotator_metadata={
                    "family": name,
                    "source": f"reasoning-gym {FAMILIES[name].source}",
                    "seed": seed,
                    "solution": FAMILIES[name].solution(entry),
                },
                row=index + 1,
            )
        )
    return tasks


def make_stream(
    families: Sequence[str], tasks: int, holdout: int, seed: int, *, worked_examples: int = 0
) -> tuple[list[GaiaTask], list[GaiaTask], list[GaiaTask]]:
    """The training stream, a held-out set, and `worked_examples` solved tasks per family;
    no question appears in two of them."""
    train = make_tasks(families, tasks, seed, prefix="train")
    seen = {t.question for t in train}
    candidates = make_tasks(
        families, holdout * 2 + len(families), seed + HOLDOUT_SEED_OFFSET, prefix="holdout"
    )
    held = [t for t in candidates if t.question not in seen][:holdout]
    if len(held) < holdout:
        raise InvalidInputError(
            f"Only {len(held)} held-out tasks differ from the training stream; ask for fewer."
        )
    worked: list[GaiaTask] = []
    if worked_examples > 0:
        seen |= {t.question for t in held}
        pool = make_tasks(
            families,
            (worked_examples + 2) * len(families),
            seed + WORKED_SEED_OFFSET,
            prefix="worked",
        )
        for family in families:
            mine = [
                t
                for t in pool
                if t.annotator_metadata["family"] == family and t.question not in seen
            ]
            worked.extend(mine[:worked_examples])
    return train, held, worked


class Rememberer(Protocol):
    """A solver that can be given solved tasks (question, solution, answer) as memory."""

    def remember(self, tasks: Sequence[GaiaTask]) -> int: ...


@dataclass(frozen=True)
class PolicyRun:
    policy: str
    seed: int
    holdout_accuracy: float
    train_scores: list[bool]  # in stream order; empty for `none`
    holdout_by_family: dict[str, float]


SolverFactory = Callable[[str, Path], Solver]


def write_stream(folder: Path, tasks: list[GaiaTask]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_metadata(folder / "metadata.jsonl", tasks)
    return folder


def run_policy(
    policy: str,
    seed: int,
    train_dir: Path,
    holdout_dir: Path,
    solver_factory: SolverFactory,
    out: Path,
    *,
    worked: Sequence[GaiaTask] = (),
    resume: bool = False,
) -> PolicyRun:
    """Worked examples, the training stream (continual), then the held-out set (frozen)."""
    home = out / f"seed-{seed}" / policy
    solver = solver_factory(policy, home)
    try:
        train_scores: list[bool] = []
        if policy != "none" and worked and not (resume and (home / "train").exists()):
            remember = getattr(solver, "remember", None)
            if not callable(remember):
                raise InvalidInputError(
                    f"{type(solver).__name__} cannot store worked examples; use --worked 0."
                )
            remember(worked)
        if policy != "none":
            trained = run_eval(
                load_split(train_dir), solver, home / "train", mode="continual", resume=resume,
                info={"policy": policy, "seed": seed}, title=f"Stream training ({policy})",
            )  # fmt: skip
            by_id = {r["task_id"]: r for r in trained.records}
            train_scores = [
                by_id[t.task_id].get("score") is True for t in load_split(train_dir).tasks
            ]
        held = run_eval(
            load_split(holdout_dir), solver, home / "holdout",
            mode="none" if policy == "none" else "frozen", resume=resume,
            info={"policy": policy, "seed": seed}, title=f"Stream held-out ({policy})",
        )  # fmt: skip
    finally:
        close = getattr(solver, "close", None)
        if callable(close):
            close()
    families: dict[str, list[bool]] = {}
    family_of = {t.task_id: t.annotator_metadata["family"] for t in load_split(holdout_dir).tasks}
    for record in held.records:
        families.setdefault(family_of[record["task_id"]], []).append(record.get("score") is True)
    scores = [ok for values in families.values() for ok in values]
    return PolicyRun(
        policy=policy,
        seed=seed,
        holdout_accuracy=sum(scores) / len(scores) if scores else 0.0,
        train_scores=train_scores,
        holdout_by_family={f: sum(v) / len(v) for f, v in sorted(families.items())},
    )


def run_stream(
    *,
    families: Sequence[str],
    policies: Sequence[str],
    tasks: int,
    holdout: int,
    seeds: Sequence[int],
    solver_factory: SolverFactory,
    out: Path,
    worked_examples: int = 0,
    resume: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[PolicyRun]:
    """Every policy on every seed; each policy starts from a memory of its own holding only
    the worked examples (none for the `none` baseline)."""
    runs: list[PolicyRun] = []
    for seed in seeds:
        train, held, worked = make_stream(
            families, tasks, holdout, seed, worked_examples=worked_examples
        )
        train_dir = write_stream(out / f"seed-{seed}" / "tasks" / "train", train)
        holdout_dir = write_stream(out / f"seed-{seed}" / "tasks" / "holdout", held)
        if worked:
            write_stream(out / f"seed-{seed}" / "tasks" / "worked", worked)
        for policy in policies:
            if progress is not None:
                progress(f"seed {seed}: policy {policy}")
            runs.append(
                run_policy(
                    policy,
                    seed,
                    train_dir,
                    holdout_dir,
                    solver_factory,
                    out,
                    worked=worked,
                    resume=resume,
                )  # fmt: skip
            )
    return runs


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, variance**0.5


def summary(runs: Sequence[PolicyRun]) -> dict[str, dict[str, Any]]:
    """Per policy: held-out accuracy mean and sample std over seeds, and the per-seed values."""
    table: dict[str, dict[str, Any]] = {}
    for policy in dict.fromkeys(r.policy for r in runs):
        mine = [r for r in runs if r.policy == policy]
        mean, std = _mean_std([r.holdout_accuracy for r in mine])
        train = [ok for r in mine for ok in r.train_scores]
        families: dict[str, list[float]] = {}
        for run in mine:
            for family, accuracy in run.holdout_by_family.items():
                families.setdefault(family, []).append(accuracy)
        table[policy] = {
            "holdout": mean,
            "holdout_std": std,
            "holdout_per_seed": {str(r.seed): r.holdout_accuracy for r in mine},
            "train": sum(train) / len(train) if train else None,
            "holdout_by_family": {f: sum(v) / len(v) for f, v in families.items()},
        }
    return table


def markdown_table(table: dict[str, dict[str, Any]], seeds: Sequence[int]) -> str:
    families = sorted({f for row in table.values() for f in row["holdout_by_family"]})
    head = ["policy", f"held-out accuracy (mean ± std, {len(seeds)} seed(s))", "training stream"]
    lines = [
        "| " + " | ".join(head + families) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(families),
    ]
    for policy, row in table.items():
        train = "—" if row["train"] is None else f"{100 * row['train']:.1f}%"
        cells = [
            policy,
            f"{100 * row['holdout']:.1f}% ± {100 * row['holdout_std']:.1f}",
            train,
            *(
                f"{100 * row['holdout_by_family'][f]:.0f}%"
                if f in row["holdout_by_family"]
                else "—"
                for f in families
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def learning_curve(runs: Sequence[PolicyRun], path: Path, *, title: str) -> Path:
    """Cumulative accuracy over the training stream per policy (mean over seeds), with each
    policy's held-out accuracy as a dashed line; `none` appears as its held-out baseline."""
    with eval_extra("Plotting the learning curve"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for index, policy in enumerate(dict.fromkeys(r.policy for r in runs)):
        mine = [r for r in runs if r.policy == policy]
        color = f"C{index}"
        length = min((len(r.train_scores) for r in mine), default=0)
        if length:
            curve = []
            for step in range(1, length + 1):
                per_seed = [sum(r.train_scores[:step]) / step for r in mine]
                curve.append(sum(per_seed) / len(per_seed))
            axes.plot(range(1, length + 1), curve, color=color, label=f"{policy} (stream)")
        held = sum(r.holdout_accuracy for r in mine) / len(mine)
        axes.axhline(held, color=color, linestyle="--", label=f"{policy} held-out {held:.0%}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("tasks seen in the training stream")
    axes.set_ylabel("cumulative accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
