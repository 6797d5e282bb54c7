"""Which past cases an attempt sees: the store's shortlist, then the policy's choice."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from memory_agent.runtime import prompts
from memory_agent.runtime.prompts import ShownCase
from memory_agent.runtime.state import EpisodeState, EpisodeUpdate

if TYPE_CHECKING:
    from memory_agent.policies.base import Candidate, CasePolicy, Vector
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory
    from memory_agent.store.run_log import RunLog


class CaseRecall:
    """Retrieves a run's candidates once and selects among them for each attempt.

    `case_filter` limits the store to the cases the prompt style can show at all.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        memory: CaseMemory,
        policy: CasePolicy | None,
        log: RunLog,
        case_filter: dict[str, Any] | None,
    ) -> None:
        self.settings = settings
        self.memory = memory
        self.policy = policy
        self.log = log
        self.case_filter = case_filter
        self._candidates: dict[str, list[Candidate]] = {}

    def retrieve(self, s: EpisodeState) -> EpisodeUpdate:
        if self.policy is None or self.settings.policy.k == 0:
            self.log.event(s["run_id"], "retrieval", "off", candidates=[])
            return {"state_vector": None, "candidates": []}
        started = time.perf_counter()
        vector = self.memory.embedder.embed([s["task"]])[0]
        candidates: list[Candidate] = []
        if s["namespace"] in self.memory.namespaces() and self.memory.dim == vector.shape[0]:
            candidates = self._shortlist(s, vector)
        self._candidates[s["run_id"]] = candidates
        listed = [{"case_id": c.case_id, "similarity": round(c.similarity, 4)} for c in candidates]
        self.log.event(
            s["run_id"],
            "retrieval",
            "shortlist",
            duration_s=time.perf_counter() - started,
            candidates=listed,
        )
        return {"state_vector": [float(x) for x in vector], "candidates": listed}

    def _shortlist(self, s: EpisodeState, vector: Vector) -> list[Candidate]:
        return self.memory.candidates(vector, namespace=s["namespace"], filters=self.case_filter)

    def _candidate_objects(self, s: EpisodeState) -> list[Candidate]:
        cached = self._candidates.get(s["run_id"])
        if cached is not None or s["state_vector"] is None:
            return cached or []
        # Resumed in a new process: rebuild the shortlist from the checkpointed vector.
        candidates = self._shortlist(s, np.asarray(s["state_vector"], dtype=np.float32))
        self._candidates[s["run_id"]] = candidates
        return candidates

    def select(self, s: EpisodeState) -> EpisodeUpdate:
        stage = s["stage"]
        excluded = set(s["excluded"])
        pool = [c for c in self._candidate_objects(s) if c.case_id not in excluded]
        if self.policy is None or not pool or s["state_vector"] is None:
            return {"shown": [], "explored": [], "shown_cases": []}
        started = time.perf_counter()
        vector = np.asarray(s["state_vector"], dtype=np.float32)
        selection = self.policy.select(
            vector, pool, self.settings.policy.k, stage, explore=s["learn"]
        )
        cases = {
            c.id: c for c in self.memory.get_many(selection.case_ids, namespace=s["namespace"])
        }
        shown = [i for i in selection.case_ids if i in cases]
        shown_cases = [
            asdict(ShownCase(c.id, c.task, c.plan, c.answer, c.outcome,
                             prompts.actions_of(c.trajectory)))
            for c in (cases[i] for i in shown)
        ]  # fmt: skip
        self.log.event(
            s["run_id"],
            "selection",
            self.policy.name,
            duration_s=time.perf_counter() - started,
            stage=stage,
            shown=shown,
            scores=[round(x, 4) for x in selection.scores],
            explored=selection.explored,
            # Why: every candidate's similarity, value (and the outcomes it rests on), score,
            # and whether it was shown as an exploration pick (`logs show RUN --why`).
            considered=[c.to_json() for c in selection.considered],
        )
        return {
            "shown": shown,
            "explored": list(selection.explored[: len(shown)]),
            "shown_cases": shown_cases,
            "all_shown": sorted(set(s["all_shown"]) | set(shown)),
        }


def shown_cases(s: EpisodeState) -> list[ShownCase]:
    return [ShownCase(**c) for c in s["shown_cases"]]
