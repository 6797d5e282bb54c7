"""`memory-agent bench skills`: does a skill help where memory alone fails, and what does it
cost elsewhere? Resumable: every run is appended to results.jsonl and skipped when done.

Per seed: reasoning-gym tasks of the target families (where the embedded model fails even
with a worked case shown, e.g. gcd, lcm) and of unrelated families (where memory works, e.g.
count_bits), `train` solved tasks per family stored as successful cases (the memory), one
skill trained per target family from its cases, and `holdout` new tasks per family answered
by the real agent with memory frozen, under:
- targets: `none` (no memory, no skill), `memory`, `skill` (no memory, the family's skill
  always on), `memory+skill` (the router picks among the stored skills per task);
- unrelated families: `memory`, `memory+router` (router on), `memory+all-skills` (router off:
  every skill always on) — the interference.
Baselines get the same tasks and the same memory.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memory_agent.evals.intervals import wilson

TARGET_CONDITIONS = ("none", "memory", "skill", "memory+skill")
OTHER_CONDITIONS = ("memory", "memory+router", "memory+all-skills")
HOLDOUT_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class SkillBenchConfig:
    targets: tuple[str, ...] = ("gcd", "lcm")
    others: tuple[str, ...] = ("count_bits", "spell_backward")
    seeds: tuple[int, ...] = (0, 1, 2)
    train: int = 60  # solved tasks per family in memory (a target's skill trains on them)
    holdout: int = 40  # held-out tasks per family and condition
    steps: int = 150
    rank: int = 8
    layers: int = 8
    batch_size: int = 8
    threads: int = 2
    policy: str = "similarity"
    k: int = 1  # cases shown: the best worked example, the turn the small model copies


def _tasks(families: Sequence[str], count: int, seed: int, prefix: str) -> list[Any]:
    from memory_agent.evals.stream import make_tasks

    return make_tasks(list(families), count * len(families), seed, prefix=prefix)


def split(config: SkillBenchConfig, seed: int) -> tuple[list[Any], list[Any]]:
    """Training (solved, for memory) and held-out tasks of every family; no question in both."""
    families = [*config.targets, *config.others]
    train = _tasks(families, config.train, seed, "train")
    seen = {t.question for t in train}
    pool = _tasks(families, 2 * config.holdout + 2, seed + HOLDOUT_SEED_OFFSET, "holdout")
    held: list[Any] = []
    for family in families:
        mine = [t for t in pool if t.annotator_metadata["family"] == family]
        fresh = [t for t in mine if t.question not in seen][: config.holdout]
        seen |= {t.question for t in fresh}
        held.extend(fresh)
    return train, held


def _t95(n: int) -> float:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}
    return table.get(n, 1.96)


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% t-interval half-width over seeds (None with one seed)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": None, "n_seeds": len(values)}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return {"mean": mean, "ci95": _t95(len(values) - 1) * sd / math.sqrt(len(values)),
            "n_seeds": len(values)}  # fmt: skip


class SkillBench:
    def __init__(
        self, config: SkillBenchConfig, out: Path, say: Callable[[str], None] = print
    ) -> None:
        self.config = config
        self.out = out
        self.say = say
        self.results = out / "results.jsonl"
        self._llm: Any = None
        self._last_said = 0.0

    @property
    def llm(self) -> Any:
        if self._llm is None:
            from memory_agent.llm.local import LocalChatModel

            self._llm = LocalChatModel(threads=self.config.threads)
            self._llm.load()
        return self._llm

    def done(self) -> set[tuple[int, str, str]]:
        if not self.results.exists():
            return set()
        keys = set()
        for line in self.results.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                keys.add((row["seed"], row["condition"], row["task_id"]))
        return keys

    def settings(self, seed: int) -> Any:
        from memory_agent.settings import Settings

        return Settings(
            home=self.out / f"seed-{seed}" / "home",
            policy={"name": self.config.policy, "k": self.config.k},
            runtime={"max_attempts": 1, "local_threads": self.config.threads},
        )

    def memory_for(self, seed: int, train: Sequence[Any]) -> Any:
        from memory_agent.store import CaseMemory, NewCase

        memory = CaseMemory(self.settings(seed))
        if memory.count() == 0:
            memory.add_many(
                [NewCase(task=t.question, plan=str(t.annotator_metadata["solution"]),
                         answer=t.final_answer, reward=1.0, outcome="success",
                         source="worked-example",
                         meta={"family": t.annotator_metadata["family"], "task_id": t.task_id})
                 for t in train]
            )  # fmt: skip
        return memory

    def skills_for(self, seed: int, memory: Any) -> dict[str, dict[str, Any]]:
        """Train (or reuse) one skill per target family; its training figures."""
        from memory_agent.skills.data import CaseFilter
        from memory_agent.skills.library import SkillLibrary
        from memory_agent.skills.train import TrainOptions

        library = SkillLibrary.of(memory)
        figures = {}
        for family in self.config.targets:
            record = library.records.get(family)
            if record is None:
                self.say(f"seed {seed}: training skill {family}")
                options = TrainOptions(
                    steps=self.config.steps, rank=self.config.rank, layers=self.config.layers,
                    batch_size=self.config.batch_size, threads=self.config.threads, seed=seed,
                )  # fmt: skip
                chosen = CaseFilter(memory.settings.namespace, family=family)
                record = library.train(
                    family, memory, self.llm, chosen, options, progress=self._progress
                )
            metrics = {k: v for k, v in record.metrics.items() if k != "router"}
            figures[family] = {"label": record.label, "bytes": record.file_bytes, **metrics}
        return figures

    def _progress(self, step: int, total: int, values: dict[str, float]) -> None:
        if time.time() - self._last_said > 30 or step == total:
            self._last_said = time.time()
            shown = " ".join(f"{k} {v:.3f}" for k, v in values.items())
            self.say(f"  step {step}/{total} {shown}")

    def agent(self, seed: int, memory: Any, condition: str, family: str) -> Any:
        from memory_agent.agent import MemoryAgent

        with_memory = condition.startswith("memory")
        skills: Any
        if condition in ("none", "memory"):
            skills = False
        elif condition == "skill":
            skills = [family]
        elif condition == "memory+all-skills":
            skills = list(self.config.targets)
        else:  # memory+skill, memory+router: the router over the stored skills
            skills = None
        return MemoryAgent(
            self.settings(seed), llm=self.llm, memory=memory,
            policy=self.config.policy if with_memory else "none", skills=skills,
        )  # fmt: skip

    def run_seed(self, seed: int, deadline: float) -> bool:
        """Everything for one seed that is not done yet; False if time ran out."""
        train, held = split(self.config, seed)
        memory = self.memory_for(seed, train)
        try:
            training = self.skills_for(seed, memory)
            (self.out / f"seed-{seed}" / "training.json").write_text(json.dumps(training, indent=2))
            done = self.done()
            plan: list[tuple[str, Any]] = []
            for task in held:
                family = task.annotator_metadata["family"]
                conditions = (
                    TARGET_CONDITIONS if family in self.config.targets else OTHER_CONDITIONS
                )
                plan.extend((condition, task) for condition in conditions)
            agents: dict[tuple[str, str], Any] = {}
            todo = [(c, t) for c, t in plan if (seed, c, t.task_id) not in done]
            self.say(f"seed {seed}: {len(plan) - len(todo)}/{len(plan)} runs done")
            with self.results.open("a") as sink:
                for index, (condition, task) in enumerate(todo):
                    if time.time() > deadline:
                        return False
                    family = task.annotator_metadata["family"]
                    key = (condition, family if condition == "skill" else "")
                    if key not in agents:
                        agents[key] = self.agent(seed, memory, condition, family)
                    agent = agents[key]
                    result = agent.run(task.question, ground_truth=task.final_answer, learn=False)
                    events = [e.data for e in agent.log.events(result.run_id) if e.kind == "skills"]
                    injected = [s["skill"] for e in events for s in e.get("skills", [])]
                    row = {"seed": seed, "condition": condition, "family": family,
                           "task_id": task.task_id, "correct": result.reward == 1.0,
                           "answer": result.answer, "plan": result.plan,
                           "skills": injected, "cases_shown": len(result.cases_shown),
                           "elapsed_s": round(result.elapsed_s, 3)}  # fmt: skip
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    if index % 25 == 0:
                        self.say(f"seed {seed}: run {index + 1}/{len(todo)}")
            for agent in agents.values():
                agent.close()
        finally:
            memory.close()
        return True

    def run(self, budget_s: float) -> bool:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        deadline = time.time() + budget_s
        for seed in self.config.seeds:
            if not self.run_seed(seed, deadline):
                self.say("time budget used up; run the same command again to continue")
                return False
        return True

    def summary(self) -> dict[str, Any]:
        rows = [json.loads(x) for x in self.results.read_text().splitlines() if x.strip()]
        table: dict[str, dict[str, Any]] = {}
        for family in dict.fromkeys(r["family"] for r in rows):
            table[family] = {}
            for condition in dict.fromkeys(r["condition"] for r in rows if r["family"] == family):
                mine = [r for r in rows if r["family"] == family and r["condition"] == condition]
                per_seed: dict[int, list[bool]] = {}
                for r in mine:
                    per_seed.setdefault(r["seed"], []).append(r["correct"])
                accuracies = [sum(v) / len(v) for v in per_seed.values()]
                hits = sum(r["correct"] for r in mine)
                table[family][condition] = {
                    **interval(accuracies),
                    "per_seed": {str(s): sum(v) / len(v) for s, v in per_seed.items()},
                    "tasks_per_seed": {str(s): len(v) for s, v in per_seed.items()},
                    "pooled_wilson95": wilson(hits, len(mine)),
                    "skill_injected": sum(bool(r["skills"]) for r in mine) / len(mine),
                }
        training = {}
        for path in sorted(self.out.glob("seed-*/training.json")):
            training[path.parent.name] = json.loads(path.read_text())
        return {
            "config": json.loads((self.out / "config.json").read_text()),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": _cpus(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },  # fmt: skip
            "accuracy": table,
            "training": training,
        }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| family | condition | held-out accuracy | per seed | skill injected |",
             "| --- | --- | ---: | --- | ---: |"]  # fmt: skip
    for family, conditions in summary["accuracy"].items():
        for condition, row in conditions.items():
            ci = "" if row["ci95"] is None else f" ± {100 * row['ci95']:.1f}"
            seeds = ", ".join(f"{100 * v:.0f}%" for v in row["per_seed"].values())
            lines.append(f"| {family} | {condition} | {100 * row['mean']:.1f}%{ci} | {seeds} | "
                         f"{100 * row['skill_injected']:.0f}% |")  # fmt: skip
    return "\n".join(lines) + "\n"
