"""The runner's `Solver` backed by the real `MemoryAgent` (memory_agent.agent).

The agent module is imported when the first agent is built, so the evals load without it.
With concurrency each worker thread gets its own agent; they share the database.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from memory_agent.errors import DependencyMissingError
from memory_agent.evals.gaia import GaiaTask
from memory_agent.evals.runner import Attempt

if TYPE_CHECKING:
    from memory_agent.settings import Settings
    from memory_agent.store.embedder import Embedder

NO_MEMORY = "none"
Judge = Callable[[GaiaTask, str | None], float]


class AgentSolver:
    """Runs each attempt through `MemoryAgent.run` with the task's files and ground truth.

    With `judge`, the agent never sees the ground truth: it runs without one and, when it
    learns, gets the judge's reward afterwards through `MemoryAgent.feedback` (the path a
    user's verdict takes), so a lenient judge's mistakes become its memory.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        policy: str = "similarity",
        namespace: str | None = None,
        llm: Any = None,
        judge: Judge | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.namespace = namespace
        self.llm = llm  # a ChatModel to share (tests pass a scripted one); None: from settings
        self.judge = judge
        self.embedder = embedder  # shared across solvers so MiniLM loads once per process
        self._local = threading.local()
        self._agents: list[Any] = []
        self._lock = threading.Lock()

    def agent(self) -> Any:
        """This thread's agent, built on first use."""
        agent = getattr(self._local, "agent", None)
        if agent is None:
            # import_module keeps this module type-checkable before the runtime lands
            try:
                memory_agent_class = import_module("memory_agent.agent").MemoryAgent
            except ModuleNotFoundError as exc:
                if exc.name != "memory_agent.agent":
                    raise
                raise DependencyMissingError(
                    "This build has no agent runtime (memory_agent.agent); install a "
                    "memory-agent release that includes it to run evaluations."
                ) from exc
            memory = None
            if self.embedder is not None:
                from memory_agent.store import CaseMemory

                memory = CaseMemory(self.settings, embedder=self.embedder)
            agent = memory_agent_class(
                self.settings, llm=self.llm, policy=self.policy, memory=memory
            )
            self._local.agent = agent
            with self._lock:
                self._agents.append(agent)
        return agent

    def solve(self, task: GaiaTask, attempt: int, *, learn: bool) -> Attempt:
        started = time.perf_counter()
        agent = self.agent()
        learn = learn and self.policy != NO_MEMORY
        result = agent.run(
            task.question,
            files=list(task.files),
            ground_truth=task.final_answer if self.judge is None else None,
            namespace=self.namespace,
            learn=learn,
        )
        reward: float | None = None
        if self.judge is not None and learn and not _backend_failed(result.error):
            reward = float(self.judge(task, result.answer))
            agent.feedback(result.run_id, reward)
        elapsed = float(getattr(result, "elapsed_s", 0.0) or time.perf_counter() - started)
        return Attempt(
            prediction=result.answer,
            reasoning_trace=reasoning_trace(result.plan, result.trajectory),
            elapsed_s=elapsed,
            prompt_tokens=int(result.prompt_tokens),
            completion_tokens=int(result.completion_tokens),
            cases_shown=list(result.cases_shown),
            cases_used=list(result.cases_used),
            citation=str(result.citation),
            run_id=str(result.run_id),
            error=result.error,
            feedback=reward,
        )

    def remember(self, tasks: Sequence[GaiaTask]) -> int:
        """Store solved tasks (the solution in `annotator_metadata["solution"]`) as successful
        cases; returns how many were added (a case already stored is not added again, so a
        resumed run may repeat this). Once an agent runs, they go through its own memory,
        so its index and policy see them at once (worked examples arriving mid-stream)."""
        from memory_agent.store import CaseMemory, NewCase

        cases = [
            NewCase(
                task=t.question,
                plan=str(t.annotator_metadata.get("solution") or "") or None,
                answer=t.final_answer,
                reward=1.0,
                outcome="success",
                source="worked-example",
                meta={"task_id": t.task_id},
            )
            for t in tasks
        ]
        with self._lock:
            running = self._agents[0] if self._agents else None
        if running is not None:
            return len(
                running.memory.add_many(cases, namespace=self.namespace, skip_duplicates=True)
            )
        memory = CaseMemory(self.settings, embedder=self.embedder)
        try:
            ids = memory.add_many(cases, namespace=self.namespace, skip_duplicates=True)
        finally:
            memory.close()
        return len(ids)

    def close(self) -> None:
        with self._lock:
            agents, self._agents = self._agents, []
        for agent in agents:
            agent.close()
            if self.embedder is not None:
                agent.memory.close()  # built here, so the agent does not own it


def _backend_failed(error: str | None) -> bool:
    """The model backend failed: no verdict is due (the graph gives no reward either)."""
    return error is not None and error.startswith("LLM call failed")


def reasoning_trace(plan: str | None, trajectory: list[dict[str, Any]]) -> str:
    """The plan, then one line per trajectory step, as GAIA's `reasoning_trace` text."""
    lines = [f"PLAN: {plan}"] if plan else []
    for step in trajectory:
        lines.append(json.dumps(step, ensure_ascii=False, default=str))
    return "\n".join(lines)
