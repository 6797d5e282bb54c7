"""`MemoryService`: the case memory as other agents use it, one call per operation.

The MCP server (`memory-agent mcp`) and the HTTP API (`memory-agent serve`) call the same
methods. Every method takes a namespace (default: `settings.namespace`), validates its input
and raises a `MemoryAgentError` with a message that says how to fix the call.

The learning loop across calls: `retrieve` embeds the task, takes the store's shortlist and
lets the configured policy choose among it, exactly as the agent's recall step does; it
returns a `retrieval_id`. `report_outcome(retrieval_id, reward, used_case_ids)` then applies
the reward as the agent does when feedback arrives after a run (`apply_late_reward`): the
used cases are credited (unless the policy keeps the statistics itself) and the policy
learns from the decision.

Retrievals are kept in the store's run log (a run with `model="mcp"` and the shown ids),
not in memory: MCP clients start and stop their servers freely, several server processes
may share one store, and an outcome often arrives much later than the retrieval. The log
is durable and shared, and `memory-agent logs list` shows each retrieval and its reward.
The state vector is not stored: the task is, and embedding it again gives the same vector.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.gaps import LAST, MAX_RATE, MIN_RUNS, SIMILAR, GapSettings, gap_report

if TYPE_CHECKING:
    from memory_agent.embed_batch import EmbedBatcher
    from memory_agent.policies.base import CasePolicy
    from memory_agent.settings import Settings
    from memory_agent.store import Case, CaseMemory
    from memory_agent.store.records import Candidate
    from memory_agent.store.run_log import RunLog
    from memory_agent.store.run_log_batch import RunLogBatcher

SOURCE = "mcp"
"""The `source` of cases recorded through the service, and the `model` of its retrievals
in the run log."""
STAGE = "plan"
"""The decision stage of a retrieval (an outside agent retrieves before it plans)."""
STATUS_OPEN, STATUS_DONE = "retrieved", "done"
MAX_K = 100
STORE_WIDE = ("database", "tombstoned")
MAX_LIST = 1000


def _check_reward(reward: Any, *, required: bool = True) -> float | None:
    if reward is None and not required:
        return None
    if isinstance(reward, bool) or not isinstance(reward, int | float):
        raise InvalidInputError(f"reward must be a number between 0 and 1; got {reward!r}.")
    if not math.isfinite(reward):
        raise InvalidInputError(f"reward must be a finite number; got {reward!r}.")
    if not 0.0 <= reward <= 1.0:
        raise InvalidInputError(
            f"reward must be between 0 and 1 (0: failure, 1: success); got {reward}."
        )
    return float(reward)


def _check_int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{what} must be a whole number from {low} to {high}; got "
                                f"{value!r}.")  # fmt: skip
    return value


def _case_json(case: Case) -> dict[str, Any]:
    """A case as the service returns it: the fields an agent reads, and its learned values."""
    data = case.to_json()
    return {key: data[key] for key in ("id", "namespace", "task", "plan", "answer", "reward",
                                       "outcome", "source", "created_at", "stats")}  # fmt: skip


class MemoryService:
    """The operations other agents need: retrieve, record, report an outcome, manage cases.

    Opens (or is given) a `CaseMemory` and builds the policy `settings.policy.name`; calls
    are serialised by one lock, so a server may call it from worker threads. A retrieve
    holds it only for the policy's choice: the embedding of its query (with
    `embed_batch_size`, together with concurrent retrieves' queries, `EmbedBatcher`), its
    shortlist read and its run-log write (committed with concurrent retrieves', in one
    transaction, `RunLogBatcher`) run outside it. The codebook upkeep after writes runs in
    a background thread (`CaseMemory.upkeep_in_background`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        memory: CaseMemory | None = None,
        embed_batch_size: int | None = None,
        owns_memory: bool | None = None,
    ):
        from memory_agent.settings import Settings
        from memory_agent.store import CaseMemory
        from memory_agent.store.run_log_batch import RunLogBatcher

        self.settings = settings or (memory.settings if memory is not None else Settings())
        # A store the service opened is closed with it; a given one too if `owns_memory`.
        self._owns_memory = memory is None if owns_memory is None else owns_memory
        self.memory = memory if memory is not None else CaseMemory(self.settings)
        # A codebook retrain inside a write held the lock every call takes for minutes.
        self.memory.upkeep_in_background()
        self._lock = threading.RLock()
        self._policy: CasePolicy | None = None
        self._log: RunLog = self.memory.run_log()
        self._log_writer: RunLogBatcher = RunLogBatcher(self._log)
        self._known: set[str] = set()
        self._batcher: EmbedBatcher | None = None
        if embed_batch_size is not None:
            from memory_agent.embed_batch import EmbedBatcher

            threads = self.settings.serve.embed_threads or max(1, (os.cpu_count() or 1) - 1)
            self._batcher = EmbedBatcher(self.memory.embedder, embed_batch_size, threads)

    # ------------------------------------------------------------------ lifecycle

    @property
    def policy_name(self) -> str:
        return self.settings.policy.name

    @property
    def policy(self) -> CasePolicy | None:
        """The selection policy (None when `policy.name` is `none`), built on first use."""
        if self._policy is None and self.policy_name != "none":
            from memory_agent.policies.registry import make_policy

            self._policy = make_policy(self.policy_name, self.memory)
        return self._policy

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._log_writer.close()  # the retrievals in flight are committed before the store closes
        with self._lock:
            if self._policy is not None:
                self._policy.save()
            if self._owns_memory:
                self.memory.close()

    def __enter__(self) -> MemoryService:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def namespace_of(self, namespace: str | None) -> str:
        """The namespace a call with `namespace` works in (None: the default), checked: a
        valid name, and the token presented if it has one (NamespaceAccessError otherwise,
        before the call does anything)."""
        return self.memory.namespace_for(
            self.settings.namespace if namespace is None else namespace
        )

    def presenting(self, token: str | None) -> AbstractContextManager[None]:
        """Calls inside the block present `token` (None: none) for protected namespaces,
        instead of `settings.namespace_token`: a server passes each request's own token."""
        return self.memory.presenting(token)

    _ns = namespace_of

    # ------------------------------------------------------------------ learning loop

    def retrieve(
        self,
        task: str,
        namespace: str | None = None,
        k: int | None = None,
        vector: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """The policy's choice of past cases for `task`, best first, with the reasons
        (similarity, policy score, learned value, exploration pick) and a `retrieval_id`
        to report the outcome with.

        `vector`: the task's embedding by the store's embedder, when the caller has it (e.g.
        cached): the task is then not embedded again. An outcome reported later embeds the
        task text, so the vector must be the embedding of `task`."""
        from memory_agent.store.run_log import NewEvent, NewRun
        from memory_agent.store.validation import check_text

        ns = self._ns(namespace)
        text = check_text(task, "task", self.settings.store.max_task_chars, required=True,
                          setting="store.max_task_chars")  # fmt: skip
        assert text is not None
        k = self.settings.policy.k if k is None else _check_int(k, "k", 1, MAX_K)
        given = None if vector is None else self._check_vector(vector)
        started = time.perf_counter()
        retrieval_id = str(uuid.uuid4())
        with self._lock:
            policy = self.policy
            searchable = policy is not None and k > 0 and self._has_namespace(ns)
        query = None
        if searchable:
            # Outside the lock: embedding is the slow part, and other calls (and the batcher's
            # other callers) go on meanwhile.
            query = given if given is not None else self._embed(text)
        cases: list[dict[str, Any]] = []
        shortlist = 0
        if policy is not None and query is not None:
            # `dim` asks the database while this process has seen no vector (another process
            # may have stored the first one), and the shortlist's search then syncs at once.
            if self.memory.dim == query.shape[0]:
                # Outside the lock too: the store's reads are safe from many threads (its
                # index is searched under its own lock), and the FAISS search and the SQL
                # let other threads run. The shortlist carries the cases' text: the chosen
                # ones are shown without a second read.
                candidates = self.memory.candidates(query, namespace=ns, with_text=True)
                shortlist = len(candidates)
                if candidates:
                    with self._lock:  # the policy's per-namespace state is one at a time
                        selection = policy.select(query, candidates, k, STAGE, explore=True)
                    cases = self._reasons(selection, {c.case_id: c for c in candidates})
        shown = [c["case_id"] for c in cases]
        # Outside the lock, and committed with concurrent retrievals' in one transaction; it
        # returns once this one is committed, so an outcome reported with the id (to any
        # process sharing the store) finds it.
        self._log_writer.record(NewRun(
            retrieval_id,
            {"namespace": ns, "task": text, "model": SOURCE, "policy": self.policy_name,
             "prompt_style": SOURCE, "learn": True, "status": STATUS_OPEN, "cases_shown": shown},
            (NewEvent("selection", self.policy_name, time.perf_counter() - started,
                      {"stage": STAGE, "shown": shown, "scores": [c["score"] for c in cases],
                       "explored": [c["explored"] for c in cases]}),),
        ))  # fmt: skip
        return {
            "retrieval_id": retrieval_id,
            "namespace": ns,
            "policy": self.policy_name,
            "shortlist_size": shortlist,
            "cases": cases,
        }

    def _has_namespace(self, ns: str) -> bool:
        """Whether `ns` holds cases; a namespace once seen is remembered (namespaces are never
        dropped), so a busy server does not ask the database at every retrieve."""
        if ns in self._known:
            return True
        if ns in self.memory.namespaces():
            self._known.add(ns)
            return True
        return False

    def _embed(self, text: str) -> Any:
        if self._batcher is not None:
            return self._batcher.embed(text)
        return self.memory.embedder.embed([text])[0]

    def _check_vector(self, vector: Any) -> Any:
        from memory_agent.store.index import as_vectors

        # Numbers only, finite and within float32 (a clear error, never a numpy warning).
        array = as_vectors(vector, "vector", "a list of numbers")
        if array.ndim != 1 or array.size == 0:
            raise InvalidInputError(
                f"vector must be a flat list of numbers; got shape {list(array.shape)}."
            )
        if self.memory.dim is not None and array.shape[0] != self.memory.dim:
            raise InvalidInputError(
                f"vector has {array.shape[0]} numbers but the store's embeddings have "
                f"{self.memory.dim}; embed the task with the store's embedder, or leave vector "
                "out to let the server embed it."
            )
        return array

    @staticmethod
    def _reasons(selection: Any, by_id: dict[int, Candidate]) -> list[dict[str, Any]]:
        """Per shown case: its text, similarity and score, the policy's value of it for this
        task with the evidence under it (`task_value`, `evidence`: what ranked it; None for a
        policy that learns none), and its stored running value and visits over all tasks."""
        judged = {c.case_id: c for c in selection.considered}
        out = []
        for case_id, score, explored in zip(
            selection.case_ids, selection.scores, selection.explored, strict=False
        ):
            candidate = by_id[case_id]
            text = candidate.text
            assert text is not None  # the shortlist was read with_text
            stats = candidate.stats.get(STAGE)
            seen = judged.get(case_id)
            task_value = None if seen is None or seen.value is None else round(seen.value, 4)
            evidence = None if seen is None or seen.evidence is None else round(seen.evidence, 2)
            out.append({
                "case_id": case_id,
                "task": text.task,
                "plan": text.plan,
                "answer": text.answer,
                "reward": candidate.reward,
                "similarity": round(float(candidate.similarity), 4),
                "score": round(float(score), 4),
                "explored": bool(explored),
                "task_value": task_value,
                "evidence": evidence,
                "value": None if stats is None else round(stats.q_value, 4),
                "visits": 0 if stats is None else stats.visits,
            })  # fmt: skip
        return out

    def record(
        self,
        task: str,
        plan: str | None = None,
        answer: str | None = None,
        reward: float | None = None,
        namespace: str | None = None,
    ) -> int:
        """Store a new case (a task, how it was solved, the answer and its reward); its id."""
        from memory_agent.runtime.outcome import outcome_for
        from memory_agent.store import NewCase
        from memory_agent.store.validation import check_new_case

        ns = self._ns(namespace)
        value = _check_reward(reward, required=False)
        new = check_new_case(
            NewCase(task, plan=plan, answer=answer, reward=value, source=SOURCE,
                    outcome=outcome_for(value, answer) if value is not None else None),
            self.settings,
        )  # fmt: skip
        # Embedded outside the lock (and batched with concurrent calls' texts), as retrieve's
        # query is; a bad case was refused above, before any embedding.
        vector = self._embed(new.task)
        with self._lock:
            ids = self.memory.add_many([new], namespace=ns, embeddings=vector[None, :])
        return ids[0]

    def report_outcome(
        self, retrieval_id: str, reward: float, used_case_ids: Sequence[int] | None = None
    ) -> dict[str, Any]:
        """Apply the reward of a retrieval's outcome: the cases used earn it, the shown but
        unused ones get the policy's unused target, and the policy learns.

        `used_case_ids` None means the caller does not know which cases helped: every shown
        case then gets the reward (flat credit). Each retrieval takes one outcome.
        """
        from memory_agent.runtime.outcome import apply_late_reward, credit_record
        from memory_agent.store.run_log import RunNotFoundError

        value = _check_reward(reward)
        assert value is not None
        if not isinstance(retrieval_id, str) or not retrieval_id.strip():
            raise InvalidInputError("retrieval_id is missing; pass the id retrieve_cases gave.")
        with self._lock:
            try:
                row = self._log.get(retrieval_id.strip())
            except RunNotFoundError:
                row = None
            # The log takes a unique prefix of a run id; a retrieval id must be given whole.
            if row is None or row.id != retrieval_id.strip() or row.model != SOURCE:
                raise InvalidInputError(
                    f"Unknown retrieval id {retrieval_id!r}; pass the retrieval_id that "
                    "retrieve_cases returned."
                )
            # The retrieval's namespace, with its token if it has one, before anything moves.
            self.memory.namespace_for(row.namespace)
            if row.status != STATUS_OPEN:
                raise InvalidInputError(
                    f"Retrieval {row.id} already has an outcome (reward {row.reward}); "
                    "each retrieval takes one."
                )
            shown = [int(i) for i in row.cases_shown]
            if used_case_ids is None:
                used, citation = shown, "flat"
            else:
                used = []
                for i in used_case_ids:
                    if isinstance(i, bool) or not isinstance(i, int):
                        raise InvalidInputError(f"used_case_ids must be case ids; got {i!r}.")
                    if i not in shown:
                        raise InvalidInputError(
                            f"Case {i} was not shown by retrieval {row.id} (shown: {shown}); "
                            "used_case_ids must be among them."
                        )
                    if i not in used:
                        used.append(i)
                citation = "cited"
            if shown:
                # The agent's own path for a reward given after the run (no case to re-rate:
                # a retrieval stores none).
                record = credit_record(STAGE, shown, used, value, citation)
                apply_late_reward(
                    self.memory, self.policy, namespace=row.namespace, task=row.task,
                    case_id=None, answer=None, record=record,
                )  # fmt: skip
                self._log.event(row.id, "credit", STAGE, used=used, shown=shown,
                                reward=value, citation=citation)  # fmt: skip
            self._log.finish(row.id, status=STATUS_DONE, reward=value, reward_source="feedback",
                             citation=citation, cases_used=used)  # fmt: skip
        return {
            "retrieval_id": row.id,
            "reward": value,
            "credited": used,
            "shown": shown,
            "learned": [self._value_of(i, row.namespace) for i in shown],
        }

    def _value_of(self, case_id: int, namespace: str) -> dict[str, Any]:
        try:
            stats = self.memory.get(case_id, namespace=namespace).stats.get(STAGE)
        except CaseNotFoundError:
            return {"case_id": case_id, "deleted": True}
        return {
            "case_id": case_id,
            "value": None if stats is None else round(stats.q_value, 4),
            "visits": 0 if stats is None else stats.visits,
        }

    # ------------------------------------------------------------------ managing cases

    def list(self, namespace: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The namespace's newest live cases (an empty list for a namespace with none)."""
        ns = self._ns(namespace)
        limit = _check_int(limit, "limit", 1, MAX_LIST)
        with self._lock:
            if ns not in self.memory.namespaces():
                return []
            return [_case_json(c) for c in self.memory.list_cases(ns, limit=limit)]

    def _case_in(self, case_id: Any, ns: str) -> Case:
        if isinstance(case_id, bool) or not isinstance(case_id, int):
            raise InvalidInputError(f"case_id must be a whole number; got {case_id!r}.")
        try:
            return self.memory.get(case_id, namespace=ns)
        except CaseNotFoundError:  # another namespace's case does not exist here either
            raise CaseNotFoundError(f"No case with id {case_id} in namespace {ns!r}.") from None

    def get(self, case_id: int, namespace: str | None = None) -> dict[str, Any]:
        """One case of the namespace, with its learned values per stage."""
        ns = self._ns(namespace)
        with self._lock:
            return _case_json(self._case_in(case_id, ns))

    def delete(self, case_id: int, namespace: str | None = None) -> None:
        """Remove a case of the namespace from retrieval (a tombstone, as the CLI does)."""
        ns = self._ns(namespace)
        with self._lock:
            self._case_in(case_id, ns)
            self.memory.delete(case_id, namespace=ns, reason="deleted via mcp")

    def gaps(
        self,
        namespace: str | None = None,
        *,
        last: int = LAST,
        similar: float = SIMILAR,
        min_runs: int = MIN_RUNS,
        max_rate: float = MAX_RATE,
    ) -> dict[str, Any]:
        """The kinds of task that keep failing whatever the memory shows (memory_agent/gaps.py):
        the namespace's newest rewarded runs (retrievals with a reported outcome, agent runs)
        grouped by how alike their tasks are, the groups that rarely succeed, and the cases
        shown in them. No policy fixes such a group: the memory needs a new worked example."""
        options = GapSettings(last=last, similar=similar, min_runs=min_runs, max_rate=max_rate)
        ns = self._ns(namespace)
        # Outside the lock: it reads the run log and embeds the tasks, nothing of the policy.
        return gap_report(self.memory, ns, options)

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Counts and sizes of the namespace's memory, and the learned value and visits of
        each of its newest `MAX_LIST` cases that has had an outcome."""
        ns = self._ns(namespace)
        with self._lock:
            if ns not in self.memory.namespaces():
                return {"namespace": ns, "policy": self.policy_name, "cases": 0, "learned": {}}
            store = self.memory.stats(ns)
            for key in STORE_WIDE:  # other namespaces' counts, and a URL that may hold a password
                store.pop(key, None)
            visited = [c for c in self.memory.list_cases(ns, limit=MAX_LIST) if STAGE in c.stats]
        return {
            **store,
            "namespace": ns,
            "policy": self.policy_name,
            "learned": {
                str(c.id): {"value": round(c.stats[STAGE].q_value, 4),
                            "visits": c.stats[STAGE].visits}
                for c in visited
            },
        }  # fmt: skip
