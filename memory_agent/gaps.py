"""Where the memory fails: neighbourhoods of recent tasks that keep failing whatever is shown.

A selection policy can only choose among the cases the memory holds. When every case it can
show for some kind of task leads the planner astray (a worked example whose word starts with
the letter the small model then puts in front of every word; a memory holding only the
look-alike twin's method), no ranking fixes it: the memory needs another example. This finds
such places from the run log alone: the recent runs with a reward, grouped by how close their
tasks are (the embedder's cosine), where a group's success rate stays low. Each gap names its
tasks, the cases shown there and how those runs went, so a user can add a worked example
for that kind of task.

Grouping: every run's neighbourhood is the runs whose task is within `similar` cosine of its
own; the neighbourhood with the lowest success rate (ties: the larger) becomes a gap, widened
to the runs within `similar` of its centre when they fail as often, its runs are taken out,
and the next is chosen from what remains, as long as a neighbourhood holds at least
`min_runs` runs and at most `max_rate` of them succeeded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memory_agent.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from memory_agent.store import CaseMemory

# numpy is imported where it is used: the CLI, the service and the servers read the defaults
# below when their modules load, which must stay cheap (`memory-agent --help`).

SUCCESS = 0.5
"""A run with at least this reward counts as a success."""
MAX_RUNS = 5000
"""The most runs one report reads (each task is embedded)."""
LAST = 500
SIMILAR = 0.6
MIN_RUNS = 5
MAX_RATE = 0.25
"""The defaults of `GapSettings`, and of every surface that offers it (CLI, MCP, HTTP)."""


@dataclass(frozen=True, slots=True)
class GapSettings:
    """What counts as a gap (the defaults of `memory gaps`, MCP `find_gaps`, `GET /v1/gaps`)."""

    last: int = LAST
    """Read the newest this many rewarded runs of the namespace."""
    similar: float = SIMILAR
    """Cosine at which two tasks count as alike (MiniLM: 0.6 groups tasks of one template;
    short tasks that differ in a key word sit at 0.4-0.7)."""
    min_runs: int = MIN_RUNS
    max_rate: float = MAX_RATE

    def __post_init__(self) -> None:
        problems = []
        if (
            isinstance(self.last, bool)
            or not isinstance(self.last, int)
            or not (1 <= self.last <= MAX_RUNS)
        ):
            problems.append(f"last must be a whole number from 1 to {MAX_RUNS} (got {self.last!r})")
        if (
            isinstance(self.min_runs, bool)
            or not isinstance(self.min_runs, int)
            or (self.min_runs < 2)
        ):
            problems.append(f"min_runs must be a whole number >= 2 (got {self.min_runs!r})")
        for name in ("similar", "max_rate"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0.0 <= value <= 1.0)
            ):
                problems.append(f"{name} must be a number from 0 to 1 (got {value!r})")
        if problems:
            raise InvalidInputError("Bad gap settings: " + "; ".join(problems) + ".")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished run, as the gap finder reads it."""

    run_id: str
    task: str
    reward: float
    cases_shown: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ShownThere:
    """A case shown in a gap's runs: how often, and how many of those runs succeeded."""

    case_id: int
    shown: int
    succeeded: int


@dataclass(frozen=True, slots=True)
class Gap:
    """A neighbourhood of tasks where the memory keeps failing."""

    task: str
    """The task of the run whose neighbourhood it is."""
    runs: tuple[str, ...]
    """Its runs, newest first."""
    successes: int
    mean_reward: float
    cases: tuple[ShownThere, ...]
    """The cases shown there, most shown first."""
    nothing_shown: int
    """Runs that showed no case at all (the memory held nothing close)."""

    @property
    def rate(self) -> float:
        return self.successes / len(self.runs)

    def to_json(self) -> dict[str, object]:
        return {
            "task": self.task,
            "runs": len(self.runs),
            "successes": self.successes,
            "success_rate": round(self.rate, 4),
            "mean_reward": round(self.mean_reward, 4),
            "nothing_shown": self.nothing_shown,
            "cases": [
                {"case_id": c.case_id, "shown": c.shown, "succeeded": c.succeeded}
                for c in self.cases
            ],
            "run_ids": list(self.runs),
        }


def find_gaps(
    outcomes: Sequence[Outcome],
    vectors: npt.NDArray[np.floating],
    *,
    similar: float,
    min_runs: int,
    max_rate: float,
) -> list[Gap]:
    """The gaps among `outcomes` (newest first; `vectors`: their tasks' unit embeddings,
    one row each), worst first."""
    import numpy as np

    if len(outcomes) != len(vectors):
        raise ValueError(f"{len(outcomes)} outcomes but {len(vectors)} vectors")
    if not outcomes:
        return []
    unit = np.asarray(vectors, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    close = (unit @ unit.T) >= similar
    won = np.asarray([o.reward >= SUCCESS for o in outcomes])
    left = np.ones(len(outcomes), dtype=bool)
    gaps: list[Gap] = []
    while True:
        members = close & left[None, :] & left[:, None]
        size = members.sum(axis=1)
        rate = (members & won[None, :]).sum(axis=1) / np.maximum(size, 1)
        eligible = left & (size >= min_runs) & (rate <= max_rate)
        if not eligible.any():
            return gaps
        # Lowest rate first; among equals the larger neighbourhood, then the newest anchor.
        order = np.lexsort((np.arange(len(outcomes)), -size, rate))
        anchor = int(next(i for i in order if eligible[i]))
        taken = _widened(np.flatnonzero(members[anchor]), unit, left, won, similar, max_rate)
        gaps.append(_gap(outcomes, anchor, taken))
        left[taken] = False


def _widened(
    taken: npt.NDArray[np.intp],
    unit: npt.NDArray[np.float64],
    left: npt.NDArray[np.bool_],
    won: npt.NDArray[np.bool_],
    similar: float,
    max_rate: float,
) -> npt.NDArray[np.intp]:
    """The runs close to the centre of `taken` (one run's neighbourhood misses the kind's
    tasks at its far side), if they still fail as often as a gap may; else `taken`."""
    import numpy as np

    centre = unit[taken].mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    wider = np.flatnonzero(left & (unit @ centre >= similar))
    if len(wider) > len(taken) and won[wider].mean() <= max_rate:
        return wider
    return taken


def _gap(outcomes: Sequence[Outcome], anchor: int, taken: npt.NDArray[np.intp]) -> Gap:
    import numpy as np

    runs = [outcomes[int(i)] for i in sorted(taken)]
    shown: Counter[int] = Counter()
    succeeded: Counter[int] = Counter()
    for run in runs:
        for case_id in set(run.cases_shown):
            shown[case_id] += 1
            succeeded[case_id] += run.reward >= SUCCESS
    cases = tuple(
        ShownThere(case_id, n, succeeded[case_id])
        for case_id, n in sorted(shown.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return Gap(
        task=outcomes[anchor].task,
        runs=tuple(r.run_id for r in runs),
        successes=sum(r.reward >= SUCCESS for r in runs),
        mean_reward=float(np.mean([r.reward for r in runs])),
        cases=cases,
        nothing_shown=sum(not r.cases_shown for r in runs),
    )


def gap_report(memory: CaseMemory, namespace: str, settings: GapSettings) -> dict[str, Any]:
    """The gaps of `namespace` as JSON: the settings, how many runs were read, and per gap its
    figures, its cases (with their task texts; None for a deleted one) and its run ids. The
    namespace must already be checked (and opened, if it has a token)."""
    rows = memory.run_log().rewarded(namespace, settings.last)
    outcomes = [
        Outcome(r.id, r.task, float(r.reward or 0.0), tuple(int(i) for i in r.cases_shown))
        for r in rows
    ]
    found = []
    if outcomes:
        vectors = memory.embedder.embed([o.task for o in outcomes])
        found = find_gaps(
            outcomes,
            vectors,
            similar=settings.similar,
            min_runs=settings.min_runs,
            max_rate=settings.max_rate,
        )
    shown = sorted({c.case_id for gap in found for c in gap.cases})
    tasks = {c.id: c.task for c in memory.get_many(shown, namespace=namespace)} if shown else {}
    return {
        "namespace": namespace,
        "runs_read": len(outcomes),
        "settings": {"last": settings.last, "similar": settings.similar,
                     "min_runs": settings.min_runs, "max_rate": settings.max_rate},
        "gaps": [
            {**gap.to_json(),
             "case_tasks": {str(c.case_id): tasks.get(c.case_id) for c in gap.cases}}
            for gap in found
        ],
    }  # fmt: skip
