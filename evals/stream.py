"""The continual-learning stream: seeded reasoning-gym tasks in GAIA format.

Families (`stream_families`) are chosen so that a stored case's plan (the Python a tool
should run) carries over to new instances. The stream misleads plain similarity the ways
real agent memories do:
- twins (`--distractors`): look-alike questions that need another procedure;
- drift (`--drift`): from `drift_index` on, some families' questions change format so the
  stored one-liners now give wrong answers; a worked example of the new format arrives at
  that point (as a correction would), and the held-out tasks come from after the change;
- wrong stored successes (`--drift`, `lenient`): on a share of the training tasks the judge
  accepts any answer of the right shape, so wrong answers are stored as successes.
Policies learn only from the judge's reward on their own runs; no label reaches them.

Protocol per seed, the same tasks for every policy:
- `none`: memory off, held-out only;
- `static`: the worked examples (and corrections) only, similarity selection, memory never
  written: what a fixed example bank gives; held-out only;
- every other policy: worked examples, the training stream (continual: memory grows, the
  policy learns), then the held-out set with memory frozen.
Each (seed, policy) keeps a results file per phase that grows task by task, so a run that
stops (a crash, or the time budget) continues where it stopped with `resume`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from memory_agent.errors import InvalidInputError
from memory_agent.evals.extras import eval_extra
from memory_agent.evals.gaia import GaiaSplit, GaiaTask, load_split, write_metadata
from memory_agent.evals.results import RESULTS_NAME, ResultLog
from memory_agent.evals.runner import Solver, run_eval
from memory_agent.evals.stream_families import (
    DEFAULT_FAMILIES,
    DRIFTS,
    FAMILIES,
    Family,
    drift_applies,
)
from memory_agent.evals.stream_judge import LENIENT, STRICT, judge

__all__ = [
    "CONTROLS",
    "DEFAULT_FAMILIES",
    "DRIFTS",
    "FAMILIES",
    "Family",
    "PolicyRun",
    "StreamConfig",
    "StreamTasks",
    "agent_policy",
    "judge",
    "make_stream",
    "make_tasks",
    "resolve_families",
    "run_policy",
    "run_stream",
]

HOLDOUT_SEED_OFFSET = 1_000_003  # held-out instances come from a disjoint generator seed
WORKED_SEED_OFFSET = 2_000_003  # and so do the worked examples stored before the stream
CORRECTION_SEED_OFFSET = 3_000_017  # and the worked examples of the drifted format
JUDGE_SEED_OFFSET = 4_000_037  # which training tasks the lenient judge rates
CONTROLS = ("none", "static")  # policies that never learn: held-out only
BASELINE = "similarity"
CONFIG_NAME = "stream.json"


def agent_policy(policy: str) -> str:
    """The agent's policy for a stream policy: `static` selects by similarity."""
    return BASELINE if policy == "static" else policy


@dataclass(frozen=True)
class StreamConfig:
    """What defines a stream run; a resumed run must use the same."""

    families: list[str]
    tasks: int
    holdout: int
    worked: int = 1
    drift: bool = False
    drift_at: float = 0.5  # share of the training stream before the format change
    lenient: float = 0.0  # share of training tasks the lenient judge rates

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.holdout < 1 or self.worked < 0:
            raise InvalidInputError(
                "--tasks and --holdout must be at least 1, --worked at least 0."
            )
        if not 0.0 < self.drift_at < 1.0:
            raise InvalidInputError("--drift-at must be between 0 and 1 (a share of --tasks).")
        if not 0.0 <= self.lenient < 1.0:
            raise InvalidInputError("--lenient must be at least 0 and below 1.")

    @property
    def drifted(self) -> list[str]:
        """The families whose format changes (those with a drifted format defined)."""
        return [f for f in self.families if f in DRIFTS] if self.drift else []

    @property
    def drift_index(self) -> int | None:
        return round(self.tasks * self.drift_at) if self.drifted else None


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
    families: Sequence[str],
    count: int,
    seed: int,
    *,
    prefix: str = "train",
    drifted: Collection[str] = (),
    drift_from: int | None = None,
) -> list[GaiaTask]:
    """`count` tasks cycling through `families` in a seeded shuffled order, as GAIA tasks.

    Tasks of a `drifted` family at position `drift_from` or later use its drifted format
    (entries for which the old one-liner would still be right by chance are skipped)."""
    with eval_extra("The reasoning-gym task stream"):
        import reasoning_gym

    if count < 1:
        raise InvalidInputError("A stream needs at least one task.")
    rng = random.Random(seed)
    per_family = -(-count // len(families))
    entries = {
        name: iter(
            reasoning_gym.create_dataset(
                FAMILIES[name].source,
                size=per_family * (3 if name in drifted else 1) + 8,
                seed=_family_seed(seed, name),
            )
        )
        for name in families
    }
    order: list[str] = []
    while len(order) < count:
        cycle = list(families)
        rng.shuffle(cycle)
        order.extend(cycle)
    tasks: list[GaiaTask] = []
    for index, name in enumerate(order[:count]):
        changed = name in drifted and drift_from is not None and index >= drift_from
        entry = next(entries[name])
        while changed and not drift_applies(entry, name):
            entry = next(entries[name])
        build, solution = (
            (DRIFTS[name].build, DRIFTS[name].solution)
            if changed
            else (FAMILIES[name].build, FAMILIES[name].solution)
        )
        question, answer = build(entry)
        tasks.append(
            GaiaTask(
                task_id=f"{prefix}-{seed}-{index:04d}-{name}",
                question=question,
                level=1,
                final_answer=answer,
                annotator_metadata={
                    "family": name,
                    "format": "drifted" if changed else "original",
                    "source": f"reasoning-gym {FAMILIES[name].source}",
                    "seed": seed,
                    "solution": solution(entry),
                },
                row=index + 1,
            )
        )
    return tasks


@dataclass(frozen=True)
class StreamTasks:
    """One seed's tasks: no question appears in two of the lists."""

    train: list[GaiaTask]
    holdout: list[GaiaTask]
    worked: list[GaiaTask]  # stored before the stream
    corrections: list[GaiaTask] = field(default_factory=list)  # stored at the drift
    drift_index: int | None = None  # training tasks before the format change


def _per_family(
    pool: Sequence[GaiaTask], families: Sequence[str], n: int, seen: set[str]
) -> list[GaiaTask]:
    chosen: list[GaiaTask] = []
    for family in families:
        mine = [
            t for t in pool if t.annotator_metadata["family"] == family and t.question not in seen
        ]
        chosen.extend(mine[:n])
    return chosen


def make_stream(
    families: Sequence[str],
    tasks: int,
    holdout: int,
    seed: int,
    *,
    worked_examples: int = 0,
    config: StreamConfig | None = None,
) -> StreamTasks:
    """The training stream, a held-out set, the worked examples and, with drift, the worked
    examples of the new format; the lenient judge's tasks are marked in the metadata."""
    config = config or StreamConfig(list(families), tasks, holdout, worked_examples)
    drifted, drift_index = config.drifted, config.drift_index
    train = make_tasks(families, tasks, seed, prefix="train", drifted=drifted,
                       drift_from=drift_index)  # fmt: skip
    judge_rng = random.Random(seed + JUDGE_SEED_OFFSET)
    train = [
        replace(t, annotator_metadata={
            **t.annotator_metadata,
            "judge": LENIENT if judge_rng.random() < config.lenient else STRICT,
            **({} if drift_index is None else
               {"drift": "after" if index >= drift_index else "before"}),
        })
        for index, t in enumerate(train)
    ]  # fmt: skip
    seen = {t.question for t in train}
    candidates = make_tasks(
        families, holdout * 2 + len(families), seed + HOLDOUT_SEED_OFFSET, prefix="holdout",
        drifted=drifted, drift_from=0,
    )  # fmt: skip
    held = [t for t in candidates if t.question not in seen][:holdout]
    if len(held) < holdout:
        raise InvalidInputError(
            f"Only {len(held)} held-out tasks differ from the training stream; ask for fewer."
        )
    seen |= {t.question for t in held}
    worked: list[GaiaTask] = []
    if config.worked > 0:
        pool = make_tasks(families, (config.worked + 2) * len(families),
                          seed + WORKED_SEED_OFFSET, prefix="worked")  # fmt: skip
        worked = _per_family(pool, families, config.worked, seen)
        seen |= {t.question for t in worked}
    corrections: list[GaiaTask] = []
    if drifted:
        count = max(config.worked, 1)  # without one, no policy could learn the new format
        pool = make_tasks(drifted, (count + 2) * len(drifted), seed + CORRECTION_SEED_OFFSET,
                          prefix="correction", drifted=drifted, drift_from=0)  # fmt: skip
        corrections = _per_family(pool, drifted, count, seen)
    return StreamTasks(train, held, worked, corrections, drift_index)


class Rememberer(Protocol):
    """A solver that can be given solved tasks (question, solution, answer) as memory."""

    def remember(self, tasks: Sequence[GaiaTask]) -> int: ...


@dataclass(frozen=True)
class PolicyRun:
    policy: str
    seed: int
    holdout_accuracy: float
    train_scores: list[bool]  # in stream order; empty for the controls
    holdout_by_family: dict[str, float]
    holdout_scores: dict[str, bool] = field(default_factory=dict)  # task id -> right
    wrong_successes: int = 0  # training answers the judge accepted that were wrong
    drift_index: int | None = None


SolverFactory = Callable[[str, Path], Solver]
ProgressHook = Callable[[str, dict[str, Any] | None], None]


def write_stream(folder: Path, tasks: list[GaiaTask]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_metadata(folder / "metadata.jsonl", tasks)
    return folder


def _remember(solver: Solver, tasks: Sequence[GaiaTask]) -> None:
    remember = getattr(solver, "remember", None)
    if not callable(remember):
        raise InvalidInputError(
            f"{type(solver).__name__} cannot store worked examples; use --worked 0."
        )
    remember(list(tasks))


def _part(split: GaiaSplit, tasks: list[GaiaTask]) -> GaiaSplit:
    return GaiaSplit(split.directory, split.metadata_file, tasks, [])


def run_policy(
    policy: str,
    seed: int,
    folder: Path,
    solver_factory: SolverFactory,
    out: Path,
    *,
    resume: bool = False,
    deadline: float | None = None,
    progress: ProgressHook | None = None,
) -> PolicyRun | None:
    """One policy on one seed's tasks (in `folder`); None when the deadline stopped it."""
    home = out / f"seed-{seed}" / policy
    train_split = load_split(folder / "train")
    holdout_split = load_split(folder / "holdout")
    worked = _load_optional(folder / "worked")
    corrections = _load_optional(folder / "corrections")
    drift_index = _drift_index(train_split.tasks)
    info = {"policy": policy, "seed": seed}
    home.mkdir(parents=True, exist_ok=True)
    solver = solver_factory(agent_policy(policy), home)

    def hook(phase: str) -> Callable[[dict[str, Any]], None] | None:
        if progress is None:
            return None
        label = f"seed {seed} {policy} {phase}"
        return lambda record: progress(label, record)

    try:
        learner = policy not in CONTROLS
        stored = home / "examples-stored"
        if policy != "none" and not stored.exists():
            # duplicates are skipped, so a crash before the marker only repeats this step
            _remember(solver, [*worked, *(corrections if policy == "static" else [])])
            stored.write_text("stored\n", encoding="utf-8")
        if learner:
            marker = home / "corrections-stored"
            cut = len(train_split.tasks) if drift_index is None else drift_index
            for index, part in enumerate((train_split.tasks[:cut], train_split.tasks[cut:])):
                if index == 1 and corrections and not marker.exists():
                    _remember(solver, corrections)  # duplicates are skipped on a resume
                    marker.write_text("stored\n", encoding="utf-8")
                if not part:
                    continue
                trained = run_eval(
                    _part(train_split, part), solver, home / "train", mode="continual",
                    resume=resume or index == 1, info=info,
                    title=f"Stream training ({policy})", deadline=deadline,
                    progress=hook("train"),
                )  # fmt: skip
                if not trained.complete:
                    return None
        held = run_eval(
            holdout_split, solver, home / "holdout",
            mode="none" if policy == "none" else "frozen", resume=resume, info=info,
            title=f"Stream held-out ({policy})", deadline=deadline, progress=hook("held-out"),
        )  # fmt: skip
        if not held.complete:
            return None
    finally:
        close = getattr(solver, "close", None)
        if callable(close):
            close()
    return collect(policy, seed, home, train_split.tasks if learner else [],
                   holdout_split.tasks, drift_index)  # fmt: skip


def _load_optional(folder: Path) -> list[GaiaTask]:
    return load_split(folder).tasks if (folder / "metadata.jsonl").exists() else []


def _drift_index(train: Sequence[GaiaTask]) -> int | None:
    return next(
        (i for i, t in enumerate(train) if t.annotator_metadata.get("drift") == "after"), None
    )


def _first_records(path: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    if not (path / RESULTS_NAME).exists():
        return records  # (a ResultLog would create the folder)
    for record in ResultLog(path / RESULTS_NAME).read():
        if int(record.get("attempt", 0)) == 0 and not record.get("malformed"):
            records.setdefault(str(record["task_id"]), record)
    return records


def collect(
    policy: str,
    seed: int,
    home: Path,
    train: Sequence[GaiaTask],
    holdout: Sequence[GaiaTask],
    drift_index: int | None = None,
) -> PolicyRun:
    """A finished (seed, policy) read back from its results files."""
    trained = _first_records(home / "train") if train else {}
    train_scores = [trained[t.task_id].get("score") is True for t in train]
    wrong = sum(
        1
        for t in train
        if trained[t.task_id].get("feedback") == 1.0 and trained[t.task_id].get("score") is False
    )
    held = _first_records(home / "holdout")
    scores = {t.task_id: held[t.task_id].get("score") is True for t in holdout}
    families: dict[str, list[bool]] = {}
    for task in holdout:
        families.setdefault(str(task.annotator_metadata["family"]), []).append(scores[task.task_id])
    return PolicyRun(
        policy=policy,
        seed=seed,
        holdout_accuracy=sum(scores.values()) / len(scores) if scores else 0.0,
        train_scores=train_scores,
        holdout_by_family={f: sum(v) / len(v) for f, v in sorted(families.items())},
        holdout_scores=scores,
        wrong_successes=wrong,
        drift_index=drift_index,
    )


def prepare_seed(out: Path, config: StreamConfig, seed: int) -> Path:
    """Write one seed's task files (the same for every policy) and return their folder."""
    stream = make_stream(config.families, config.tasks, config.holdout, seed, config=config)
    folder = out / f"seed-{seed}" / "tasks"
    write_stream(folder / "train", stream.train)
    write_stream(folder / "holdout", stream.holdout)
    if stream.worked:
        write_stream(folder / "worked", stream.worked)
    if stream.corrections:
        write_stream(folder / "corrections", stream.corrections)
    return folder


def check_config(out: Path, config: StreamConfig, *, resume: bool) -> None:
    """Record the stream's definition; a resumed run must ask for the same stream."""
    path = out / CONFIG_NAME
    wanted = json.loads(json.dumps(config.__dict__))
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != wanted:
            changed = sorted(k for k in wanted if old.get(k) != wanted[k])
            raise InvalidInputError(
                f"{out} holds a stream made with other settings ({', '.join(changed)}); "
                "resume it with the same options or choose another --out."
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class StreamOutcome:
    runs: list[PolicyRun]
    complete: bool  # False: the time budget ran out; resume to continue


def run_stream(
    *,
    config: StreamConfig,
    policies: Sequence[str],
    seeds: Sequence[int],
    solver_factory: SolverFactory,
    out: Path,
    resume: bool = False,
    deadline: float | None = None,
    progress: ProgressHook | None = None,
) -> StreamOutcome:
    """Every policy on every seed, seed by seed; each (seed, policy) has its own memory."""
    check_config(out, config, resume=resume)
    runs: list[PolicyRun] = []
    for seed in seeds:
        folder = prepare_seed(out, config, seed)
        for policy in policies:
            if progress is not None:
                progress(f"seed {seed} {policy}", None)
            run = run_policy(policy, seed, folder, solver_factory, out, resume=resume,
                             deadline=deadline, progress=progress)  # fmt: skip
            if run is None:
                return StreamOutcome(runs, complete=False)
            runs.append(run)
    return StreamOutcome(runs, complete=True)


def finished_runs(out: Path, policies: Sequence[str], seeds: Sequence[int]) -> StreamOutcome:
    """The (seed, policy) runs under `out` whose every task has a result, read back without
    running anything (to report on a run that is still going or was stopped)."""
    runs: list[PolicyRun] = []
    for seed in seeds:
        folder = out / f"seed-{seed}" / "tasks"
        if not (folder / "holdout" / "metadata.jsonl").exists():
            continue
        train = load_split(folder / "train").tasks
        holdout = load_split(folder / "holdout").tasks
        for policy in policies:
            home = out / f"seed-{seed}" / policy
            mine = [] if policy in CONTROLS else train
            done_train = _first_records(home / "train") if mine else {}
            done_held = _first_records(home / "holdout")
            if all(t.task_id in done_train for t in mine) and all(
                t.task_id in done_held for t in holdout
            ):
                runs.append(collect(policy, seed, home, mine, holdout, _drift_index(train)))
    return StreamOutcome(runs, complete=len(runs) == len(policies) * len(seeds))


def episodes(config: StreamConfig, policies: Sequence[str], seeds: Sequence[int]) -> int:
    """Agent runs the whole stream takes (controls: held-out only)."""
    per_seed = sum(config.holdout + (0 if p in CONTROLS else config.tasks) for p in policies)
    return per_seed * len(seeds)


def episodes_done(out: Path, policies: Sequence[str], seeds: Sequence[int]) -> int:
    """Agent runs already recorded under `out` (what a resumed run skips)."""
    done = 0
    for seed in seeds:
        for policy in policies:
            for phase in ("train", "holdout"):
                done += len(_first_records(out / f"seed-{seed}" / policy / phase))
    return done


def seconds_left(budget_minutes: float | None) -> float | None:
    """The `time.monotonic()` deadline for a budget in minutes (None: no limit)."""
    return None if budget_minutes is None else time.monotonic() + 60.0 * budget_minutes


def learning_curve(runs: Sequence[PolicyRun], path: Path, *, title: str) -> Path:
    """The stream's plot (see `stream_report.learning_curve`)."""
    from memory_agent.evals.stream_report import learning_curve as plot

    return plot(runs, path, title=title)
