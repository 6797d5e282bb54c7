"""One episode as a LangGraph graph, checkpointed in SQLite so an interrupted run resumes.

retrieve -> select -> plan -> act (loop) -> reward -> credit -> [refine -> select]
         -> write -> update_policy

Every node is a method over `EpisodeState` that returns the fields it changes. Nothing a
model or tool does may crash the run: malformed replies, unknown tools, tool errors and
timeouts become observations; limits end the attempt with an error noted in the state.
The prompt protocol (`styles`), tool calls (`tool_calls`), case choice (`recall`) and the
applying of rewards (`outcome`) live in their own modules; the nodes only connect them.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memory_agent.errors import InvalidInputError, MemoryAgentError
from memory_agent.llm.base import ChatModel
from memory_agent.runtime import prompts
from memory_agent.runtime.judge import judge_answer
from memory_agent.runtime.outcome import (
    credit_record,
    credit_used,
    outcome_for,
    update_policy,
    write_case,
)
from memory_agent.runtime.recall import CaseRecall, shown_cases
from memory_agent.runtime.state import EpisodeState, EpisodeUpdate, initial_state, no_action
from memory_agent.runtime.styles import style_for
from memory_agent.runtime.tool_calls import ToolCalls
from memory_agent.store.run_log import RunLog
from memory_agent.tools.base import ToolRegistry

if TYPE_CHECKING:
    from memory_agent.policies.base import CasePolicy
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory

_NODES = ("retrieve", "select", "plan", "act", "reward", "credit", "refine", "write",
          "update_policy")  # fmt: skip


class Episode:
    """Holds what the nodes need (model, store, policy, tools, log) and the compiled graph."""

    def __init__(
        self,
        *,
        settings: Settings,
        llm: ChatModel,
        memory: CaseMemory,
        policy: CasePolicy | None,
        tools: ToolRegistry,
        runlog: RunLog,
        checkpoint_path: Path,
        judge: ChatModel | None = None,
    ) -> None:
        self.settings = settings
        self.judge = judge
        self.llm = llm
        self.memory = memory
        self.policy = policy
        self.tools = tools
        self.log = runlog
        self.checkpoint_path = checkpoint_path
        self.style = style_for(llm.prompt_style)
        self.tool_calls = ToolCalls(settings, tools, runlog)
        self.recall = CaseRecall(
            settings=settings, memory=memory, policy=policy, log=runlog,
            case_filter=self.style.case_filter,
        )  # fmt: skip
        self._connection: sqlite3.Connection | None = None
        self._graph: Any = None

    # ------------------------------------------------------------------ graph

    @property
    def graph(self) -> Any:
        if self._graph is None:
            from langgraph.checkpoint.sqlite import SqliteSaver
            from langgraph.graph import END, START, StateGraph

            self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(str(self.checkpoint_path), check_same_thread=False)
            builder: Any = StateGraph(EpisodeState)
            for name in _NODES:
                builder.add_node(name, getattr(self, f"node_{name}"))
            builder.add_edge(START, "retrieve")
            builder.add_edge("retrieve", "select")
            builder.add_edge("select", "plan")
            builder.add_conditional_edges("plan", self.after_step, ["act", "reward"])
            builder.add_conditional_edges("act", self.after_step, ["act", "reward"])
            builder.add_edge("reward", "credit")
            builder.add_conditional_edges("credit", self.after_credit, ["refine", "write"])
            builder.add_edge("refine", "select")
            builder.add_edge("write", "update_policy")
            builder.add_edge("update_policy", END)
            self._graph = builder.compile(checkpointer=SqliteSaver(self._connection))
        return self._graph

    def config(self, run_id: str) -> dict[str, Any]:
        # Each LLM step is one pass through `act`; leave room for every step and attempt.
        limit = 4 * (self.settings.runtime.max_steps + self.settings.runtime.max_tool_calls) + 20
        return {"configurable": {"thread_id": run_id}, "recursion_limit": limit}

    def invoke(self, initial: EpisodeState | None, run_id: str) -> EpisodeState:
        result: EpisodeState = self.graph.invoke(initial, self.config(run_id))
        return result

    def saved_state(self, run_id: str) -> EpisodeState | None:
        snapshot = self.graph.get_state(self.config(run_id))
        values = snapshot.values if snapshot else None
        return values or None

    def forget(self, run_id: str) -> None:
        """Drop a finished run's checkpoints: only interrupted runs need them to resume."""
        self.graph.checkpointer.delete_thread(run_id)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            self._graph = None

    # ------------------------------------------------------------------ routing

    def after_step(self, s: EpisodeState) -> str:
        return "reward" if s["error"] or s["pending"] is None else "act"

    def after_credit(self, s: EpisodeState) -> str:
        settings = self.settings
        if s["error_kind"] == "llm" or s["attempt"] >= settings.runtime.max_attempts:
            return "write"
        if time.time() >= s["deadline"] or s["steps"] >= settings.runtime.max_steps:
            return "write"
        reward = s["reward"]
        wrong = reward is not None and reward < 1.0 and settings.runtime.refine_on_wrong_answer
        return "refine" if s["answer"] is None or wrong else "write"

    # ------------------------------------------------------------------ nodes

    def node_retrieve(self, s: EpisodeState) -> EpisodeUpdate:
        return self.recall.retrieve(s)

    def node_select(self, s: EpisodeState) -> EpisodeUpdate:
        return self.recall.select(s)

    def node_plan(self, s: EpisodeState) -> EpisodeUpdate:
        # Reset what an earlier attempt left, or a refine attempt would inherit its answer,
        # citation and note; the retry note is read into the prompt first.
        update: EpisodeUpdate = {
            "messages": self.style.prompt(s, shown_cases(s), self.tools),
            "pending": None, "answer": None, "cited": None, "plan": None,
            "output_for_citation": "", "error": None, "error_kind": None, "retry_note": None,
        }  # fmt: skip
        return {**update, **self._llm_step({**s, **update}, first=True)}

    def node_act(self, s: EpisodeState) -> EpisodeUpdate:
        pending = s["pending"] or no_action()
        if pending["kind"] != "tool":
            nudge: EpisodeUpdate = {
                "messages": [*s["messages"], {"role": "user", "content": prompts.NUDGE}]
            }
            return {**nudge, **self._llm_step({**s, **nudge})}
        trajectory = list(s["trajectory"])
        result = self.tool_calls.call(s, pending, trajectory)
        tool_calls = s["tool_calls"] + 1
        observed = self.style.observe(
            s, pending, result, spent=tool_calls >= self.settings.runtime.max_tool_calls
        )
        update: EpisodeUpdate = {"tool_calls": tool_calls, "trajectory": trajectory}
        update.update(observed.update)
        if not observed.ask_model:
            return update
        return {**update, **self._llm_step({**s, **update})}

    def _llm_step(self, s: EpisodeState, *, first: bool = False) -> EpisodeUpdate:
        """Call the model once on `s["messages"]` and parse its reply into the state."""
        settings, run_id = self.settings, s["run_id"]
        out: EpisodeUpdate = {"messages": s["messages"], "trajectory": list(s["trajectory"])}
        if s["steps"] >= settings.runtime.max_steps:
            return self._fail(
                s, out, "limit", f"step limit reached (max_steps={settings.runtime.max_steps})"
            )
        if time.time() >= s["deadline"]:
            timeout = f"{settings.runtime.task_timeout_s:g} s (task_timeout_s)"
            return self._fail(s, out, "limit", f"task timed out after {timeout}")
        out["steps"] = s["steps"] + 1
        try:
            reply = self.llm.chat(
                s["messages"],
                max_tokens=self.style.max_tokens(settings),
                stop=list(self.style.stop),
                temperature=settings.runtime.temperature,
                **self.style.chat_options(self.llm, self.tools),
            )
        except Exception as exc:  # any backend failure ends the attempt, never the process
            return self._fail(s, out, "llm", f"LLM call failed: {type(exc).__name__}: {exc}")
        self.log.event(
            run_id, "llm", self.llm.name, duration_s=reply.elapsed_s,
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            first_token_s=reply.first_token_s, reply=prompts.clip(reply.text),
            messages=len(s["messages"]), finish_reason=reply.finish_reason,
        )  # fmt: skip
        llm_step = {
            "type": "llm",
            "text": prompts.clip(reply.text),
            "tokens": reply.completion_tokens,
        }
        return {
            **out,
            "prompt_tokens": s["prompt_tokens"] + reply.prompt_tokens,
            "completion_tokens": s["completion_tokens"] + reply.completion_tokens,
            "trajectory": [*s["trajectory"], llm_step],
            "messages": [*s["messages"], {"role": "assistant", "content": reply.text}],
            "output_for_citation": s["output_for_citation"] + "\n" + reply.text,
            **self.style.parse(s, reply.text, first),
        }

    def _fail(self, s: EpisodeState, out: EpisodeUpdate, kind: str, message: str) -> EpisodeUpdate:
        self.log.event(s["run_id"], "error", kind, message=message)
        error_step = {"type": "error", "kind": kind, "message": message}
        return {
            **out,
            "trajectory": [*s["trajectory"], error_step],
            "error": message,
            "error_kind": kind,
            "pending": None,
        }

    def node_reward(self, s: EpisodeState) -> EpisodeUpdate:
        truth = s["ground_truth"]
        if s["error_kind"] == "llm":
            return {"reward": None, "reward_source": None}
        if truth is None:
            return judge_answer(self.judge, self.log, s)
        from memory_agent.scoring import question_scorer

        reward = 1.0 if question_scorer(s["answer"], truth) else 0.0
        self.log.event(s["run_id"], "reward", "ground_truth", reward=reward, answer=s["answer"])
        return {"reward": reward, "reward_source": "ground_truth"}

    def node_credit(self, s: EpisodeState) -> EpisodeUpdate:
        cases = shown_cases(s)
        if not cases:
            used, citation = [], "none"
        elif s["cited"] is not None:
            used, citation = list(s["cited"]), "cited"
        else:
            margin = self.settings.runtime.citation_margin
            used = prompts.infer_used(s["output_for_citation"], cases, margin=margin)
            citation = "inferred"
        out: EpisodeUpdate = {"cases_used": used, "citation": citation}
        reward = s["reward"]
        if not s["learn"] or reward is None or not cases:
            return out
        record = credit_record(s["stage"], s["shown"], used, reward, citation)
        credit_used(self.memory, self.policy, record)
        self.log.event(
            s["run_id"], "credit", record["stage"],
            used=used, shown=s["shown"], reward=reward, citation=citation,
        )  # fmt: skip
        out["feedback"] = [*s["feedback"], record]
        return out

    def node_refine(self, s: EpisodeState) -> EpisodeUpdate:
        note = s["retry_note"]
        if note is None:
            answer = s["answer"]
            reason = s["error"] or (
                "no answer was given" if answer is None else f"the answer {answer!r} was wrong"
            )
            note = {"previous": s["plan"] or "", "observation": reason}
        attempt = s["attempt"] + 1
        self.log.event(
            s["run_id"], "refine", "refine", attempt=attempt, reason=note["observation"][:500]
        )
        return {
            "stage": "refine",
            "attempt": attempt,
            "excluded": sorted(set(s["excluded"]) | set(s["shown"])),
            "retry_note": note,
            "error": None,
            "error_kind": None,
        }

    def node_write(self, s: EpisodeState) -> EpisodeUpdate:
        if not s["learn"] or s["error_kind"] == "llm":
            return {"case_id": None}
        if not s["plan"] and s["answer"] is None:
            return {"case_id": None}
        from memory_agent.store import NewCase

        case = NewCase(
            task=s["task"], plan=s["plan"], trajectory=s["trajectory"], answer=s["answer"],
            reward=s["reward"], outcome=outcome_for(s["reward"], s["answer"]), source="agent",
            meta={"run_id": s["run_id"], "model": self.llm.name, "citation": s["citation"],
                  "cases_used": s["cases_used"]},
        )  # fmt: skip
        started = time.perf_counter()
        try:
            case_id = write_case(self.memory, case, s["namespace"], s["state_vector"])
        except MemoryAgentError as exc:
            self.log.event(s["run_id"], "error", "memory", message=str(exc))
            return {"case_id": None}
        self.log.event(
            s["run_id"], "memory", "write", duration_s=time.perf_counter() - started,
            case_id=case_id, duplicate=case_id is None,
        )  # fmt: skip
        return {"case_id": case_id}

    def node_update_policy(self, s: EpisodeState) -> EpisodeUpdate:
        if self.policy is None or not s["learn"] or s["state_vector"] is None:
            return {}
        vector = np.asarray(s["state_vector"], dtype=np.float32)
        for record in s["feedback"]:
            started = time.perf_counter()
            try:
                update_policy(self.policy, s["namespace"], vector, record)
            except (MemoryAgentError, InvalidInputError, ValueError) as exc:
                self.log.event(s["run_id"], "error", "policy_update", message=str(exc))
                continue
            self.log.event(
                s["run_id"], "policy_update", self.policy.name,
                duration_s=time.perf_counter() - started, **record,
            )  # fmt: skip
        return {}


__all__ = ["Episode", "initial_state", "outcome_for"]
