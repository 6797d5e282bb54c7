"""`MemoryAgent`: run tasks, learn from their outcomes, take later feedback.

```python
from memory_agent import MemoryAgent
agent = MemoryAgent()                  # embedded defaults: local SmolLM2, SQLite, track policy
result = agent.run("question", files=[...], ground_truth=None)
agent.feedback(result.run_id, reward=1.0)   # later feedback also reaches the cited cases
```
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from memory_agent.errors import InvalidInputError
from memory_agent.settings import Settings

if TYPE_CHECKING:
    from memory_agent.llm.base import ChatModel
    from memory_agent.policies.base import CasePolicy
    from memory_agent.runtime.graph import Episode
    from memory_agent.runtime.state import EpisodeState
    from memory_agent.skills.inject import SkillInjector, SkillsOption
    from memory_agent.store import CaseMemory
    from memory_agent.store.run_log import RunLog
    from memory_agent.tools.base import ToolRegistry

EventListener = Callable[[str, dict[str, Any]], None]
"""Called with (kind, details) for every logged event: retrieval, llm, tool, reward, ..."""


class RunOptions(TypedDict, total=False):
    """The keyword options of `MemoryAgent.run` and `arun` (every one may be left out)."""

    files: Sequence[Path]  # attachments, copied into the run's workspace
    ground_truth: str | None  # scores the run; without it a judge or later feedback does
    namespace: str | None  # the case namespace (default: settings.namespace)
    learn: bool  # False: frozen memory, nothing is written or updated (default True)
    run_id: str | None  # default: a new UUID
    on_event: EventListener | None  # default: the agent's `listener`


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run."""

    run_id: str
    task: str
    answer: str | None  # the text after "FINAL ANSWER:" (None if none was given)
    reward: float | None  # from ground truth, a judge model, or None until feedback
    cases_shown: list[int]
    cases_used: list[int]  # cited by the planner, or inferred (see citation)
    citation: str  # "cited" | "inferred" | "none"
    plan: str | None
    trajectory: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float
    error: str | None  # a failure that ended the run early, else None
    case_id: int | None = None  # the case this run wrote to memory
    reward_source: str | None = None
    attempts: int = 1
    stage: str = "plan"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task": self.task,
            "answer": self.answer,
            "reward": self.reward,
            "reward_source": self.reward_source,
            "cases_shown": self.cases_shown,
            "cases_used": self.cases_used,
            "citation": self.citation,
            "plan": self.plan,
            "trajectory": self.trajectory,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "elapsed_s": self.elapsed_s,
            "error": self.error,
            "case_id": self.case_id,
            "attempts": self.attempts,
        }


class MemoryAgent:
    """An agent whose past episodes, kept as cases, guide its next ones.

    Any part can be passed in: a chat model, a `CaseMemory`, a policy (instance or name;
    "none" turns memory off) and a tool registry. What is not passed comes from settings.
    `skills`: LoRA skills for the local model (memory_agent.skills): None picks them per task
    by the router when any are stored, False turns them off, names ("gcd", "gcd:0.8") always
    inject those.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        llm: ChatModel | None = None,
        memory: CaseMemory | None = None,
        policy: CasePolicy | str | None = None,
        tools: ToolRegistry | None = None,
        judge: ChatModel | None = None,
        skills: SkillsOption = None,
    ) -> None:
        self.settings = settings or Settings()
        self._llm = llm
        self._judge = judge
        self._owns_memory = memory is None
        if memory is None:
            from memory_agent.store import CaseMemory

            memory = CaseMemory(self.settings)
        self.memory = memory
        chosen = self.settings.policy.name if policy is None else policy
        if isinstance(chosen, str):
            self.policy_name = chosen
            self.policy: CasePolicy | None = None
            if chosen != "none":
                from memory_agent.policies.registry import make_policy

                self.policy = make_policy(chosen, memory)
        else:
            self.policy_name, self.policy = chosen.name, chosen
        if tools is None:
            from memory_agent.tools import default_tools

            tools = default_tools(self.settings)
        self.tools = tools

        self.log: RunLog = memory.run_log()
        self._skills_choice = skills
        self._skills: SkillInjector | None = None
        self._episode: Episode | None = None
        self.listener: EventListener | None = None
        if skills not in (None, True, False):
            try:  # named skills that cannot load fail here, not in the middle of a run
                _ = self.skills
            except BaseException:
                if self._owns_memory:
                    memory.close()
                raise

    @property
    def llm(self) -> ChatModel:
        if self._llm is None:
            from memory_agent.llm import make_chat_model

            self._llm = make_chat_model(self.settings)
        return self._llm

    @property
    def skills(self) -> SkillInjector:
        """Which LoRA skills each run injects into the local model (see memory_agent.skills)."""
        if self._skills is None:
            from memory_agent.skills.inject import SkillInjector

            runtime = self.settings.runtime
            self._skills = SkillInjector(
                self._skills_choice,
                self.memory,
                self.llm,
                threshold=runtime.skill_router_threshold,
                top=runtime.skill_router_top,
                max_skills=runtime.skill_router_max,
            )
        return self._skills

    @property
    def judge(self) -> ChatModel | None:
        """The model that rates answers without ground truth (settings.runtime.judge_model)."""
        if self._judge is None and self.settings.runtime.judge_model:
            if self.settings.runtime.judge_model == "self":
                self._judge = self.llm
            else:
                from memory_agent.llm import make_chat_model

                judge_settings = self.settings.replace(
                    runtime={"model": self.settings.runtime.judge_model}
                )
                self._judge = make_chat_model(judge_settings)
        return self._judge

    @property
    def episode(self) -> Episode:
        if self._episode is None:
            from memory_agent.runtime.graph import Episode

            self._episode = Episode(
                settings=self.settings,
                llm=self.llm,
                memory=self.memory,
                policy=self.policy,
                tools=self.tools,
                runlog=self.log,
                checkpoint_path=self.settings.home / "checkpoints.db",
                judge=self.judge,
            )
        return self._episode

    # ------------------------------------------------------------------ running

    def _check_task(self, task: str) -> str:
        if not isinstance(task, str) or not task.strip():
            raise InvalidInputError("The task is empty; pass the question to answer.")
        if len(task) > self.settings.store.max_task_chars:
            raise InvalidInputError(
                f"The task has {len(task)} characters, more than MEMORY_AGENT_MAX_TASK_CHARS="
                f"{self.settings.store.max_task_chars}; shorten it or attach the text as a file."
            )
        return task.strip()

    def _stage_files(self, run_id: str, files: Sequence[Path]) -> list[Path]:
        staged = []
        missing = [str(f) for f in files if not Path(f).is_file()]
        if missing:
            raise InvalidInputError(f"Attached file(s) not found: {', '.join(missing)}.")
        target = self.settings.home / "workspaces" / run_id / "files"
        for source in files:
            target.mkdir(parents=True, exist_ok=True)
            copy = target / Path(source).name
            shutil.copyfile(source, copy)
            staged.append(copy)
        return staged

    def run(self, task: str, **options: Unpack[RunOptions]) -> RunResult:
        """Solve `task`; with `learn`, write the episode to memory and update the policy."""
        from memory_agent.runtime.state import initial_state

        unknown = sorted(set(options) - set(RunOptions.__annotations__))
        if unknown:  # a TypedDict does not check at run time what a signature did
            raise TypeError(f"run() got unexpected keyword argument(s): {', '.join(unknown)}")
        task = self._check_task(task)
        ns = options.get("namespace") or self.settings.namespace
        run_id = options.get("run_id") or str(uuid.uuid4())
        ground_truth, learn = options.get("ground_truth"), options.get("learn", True)
        staged = self._stage_files(run_id, [Path(f) for f in options.get("files", ())])
        episode = self.episode
        self.log.listener = options.get("on_event") or self.listener
        self.log.start(
            run_id,
            namespace=ns,
            task=task,
            model=self.llm.name,
            policy=self.policy_name,
            prompt_style=self.llm.prompt_style,
            learn=learn,
            ground_truth=ground_truth,
        )
        state = initial_state(
            run_id=run_id,
            task=task,
            namespace=ns,
            files=staged,
            ground_truth=ground_truth,
            learn=learn,
            timeout_s=self.settings.runtime.task_timeout_s,
        )
        return self._drive(run_id, task, state, episode)

    def resume(self, run_id: str, *, on_event: EventListener | None = None) -> RunResult:
        """Continue an interrupted run from its last checkpoint."""
        row = self.log.get(run_id)
        if row.status != "running":
            raise InvalidInputError(f"Run {row.id} already finished ({row.status}).")
        episode = self.episode
        if episode.saved_state(row.id) is None:
            raise InvalidInputError(f"Run {row.id} has no checkpoint to resume from.")
        self.log.listener = on_event or self.listener
        return self._drive(row.id, row.task, None, episode)

    def _drive(
        self, run_id: str, task: str, state: EpisodeState | None, episode: Episode
    ) -> RunResult:
        from memory_agent.runtime.state import completed

        started = time.perf_counter()
        crashed = False
        try:
            with self.skills.applied(run_id, task, self.log):
                final = episode.invoke(state, run_id)
        except Exception as exc:  # a bug must not lose the run's record
            crashed = True
            self.log.event(run_id, "error", "crash", message=f"{type(exc).__name__}: {exc}")
            self.log.update(
                run_id,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                elapsed_s=time.perf_counter() - started,
            )
            saved: dict[str, Any] = dict(episode.saved_state(run_id) or {})
            final = completed({**saved, "error": f"{type(exc).__name__}: {exc}"})
        result = self._result(run_id, task, final, time.perf_counter() - started)
        if not crashed:  # a crashed run keeps its checkpoints, to resume once fixed
            episode.forget(run_id)
        self.log.finish(
            run_id,
            status="failed" if result.error else "done",
            plan=result.plan,
            answer=result.answer,
            reward=result.reward,
            reward_source=result.reward_source,
            citation=result.citation,
            cases_shown=result.cases_shown,
            cases_used=result.cases_used,
            case_id=result.case_id,
            error=result.error,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            elapsed_s=result.elapsed_s,
        )
        return result

    def _result(self, run_id: str, task: str, s: EpisodeState, elapsed: float) -> RunResult:
        return RunResult(
            run_id=run_id,
            task=task,
            answer=s["answer"],
            reward=s["reward"],
            cases_shown=list(s["all_shown"]),
            cases_used=list(s["cases_used"]),
            citation=s["citation"],
            plan=s["plan"],
            trajectory=list(s["trajectory"]),
            prompt_tokens=int(s["prompt_tokens"]),
            completion_tokens=int(s["completion_tokens"]),
            elapsed_s=elapsed,
            error=s["error"],
            case_id=s["case_id"],
            reward_source=s["reward_source"],
            attempts=int(s["attempt"]),
            stage=s["stage"],
        )

    async def arun(self, task: str, **options: Unpack[RunOptions]) -> RunResult:
        """`run` off the event loop (the model and tools block)."""
        return await asyncio.to_thread(self.run, task, **options)

    # ------------------------------------------------------------------ feedback

    def feedback(self, run_id: str, reward: float) -> None:
        """A reward that arrives after the run (a user's /good or /bad, a late check).

        It updates the run, the case the run wrote, the statistics of the cases the run
        used, and the policy.
        """
        if not isinstance(reward, int | float) or not math.isfinite(reward):
            raise InvalidInputError(f"reward must be a finite number; got {reward!r}.")
        if not 0.0 <= reward <= 1.0:
            raise InvalidInputError(f"reward must be between 0 and 1; got {reward}.")
        row = self.log.get(run_id)
        if row.status == "running":
            raise InvalidInputError(f"Run {row.id} has not finished; give feedback after it.")
        if not row.learn:
            raise InvalidInputError(
                f"Run {row.id} ran with learn=False (frozen memory); feedback would change it."
            )
        from memory_agent.runtime.outcome import apply_late_reward, credit_record

        stage = next(
            (e.name for e in reversed(self.log.events(row.id)) if e.kind == "credit"), "plan"
        )
        used = list(row.cases_used)
        record = credit_record(
            stage or "plan", row.cases_shown, used, float(reward), row.citation or "none"
        )
        apply_late_reward(
            self.memory, self.policy, namespace=row.namespace, task=row.task,
            case_id=row.case_id, answer=row.answer, record=record,
        )  # fmt: skip
        self.log.update(row.id, reward=float(reward), reward_source="feedback")
        self.log.event(row.id, "reward", "feedback", reward=float(reward), used=used, stage=stage)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._episode is not None:
            self._episode.close()
        if self.policy is not None:
            self.policy.save()  # learned state not yet written through (network, task context)
        if self._owns_memory:
            self.memory.close()

    def __enter__(self) -> MemoryAgent:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
