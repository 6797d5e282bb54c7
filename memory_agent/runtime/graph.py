"""One episode as a LangGraph graph, checkpointed in SQLite so an interrupted run resumes.

retrieve -> select -> plan -> act (loop) -> reward -> credit -> [refine -> select]
         -> write -> update_policy

Every node is a method over `EpisodeState` that returns the fields it changes. Nothing a
model or tool does may crash the run: malformed replies, unknown tools, tool errors and
timeouts become observations; limits end the attempt with an error noted in the state.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memory_agent.errors import InvalidInputError, MemoryAgentError
from memory_agent.llm.base import ChatModel, Message
from memory_agent.runtime import prompts
from memory_agent.runtime.credit import credit_cases, policy_owns_stats
from memory_agent.runtime.prompts import ShownCase
from memory_agent.runtime.runlog import RunLog
from memory_agent.runtime.state import EpisodeState
from memory_agent.tools.base import ToolContext, ToolRegistry, ToolResult

if TYPE_CHECKING:
    from memory_agent.policies.base import Candidate, CasePolicy
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory

_TRUNCATE = 4_000


def _clip(text: str, limit: int = _TRUNCATE) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def outcome_for(reward: float | None, answer: str | None) -> str | None:
    if reward is None:
        return "failure" if answer is None else None
    if reward >= 1.0:
        return "success"
    return "failure" if reward <= 0.0 else "partial"


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
        self._candidates: dict[str, list[Candidate]] = {}
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
            for name in (
                "retrieve",
                "select",
                "plan",
                "act",
                "reward",
                "credit",
                "refine",
                "write",
                "update_policy",
            ):
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
        limit = 4 * (self.settings.max_steps + self.settings.max_tool_calls) + 20
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
        if s.get("error") or s.get("pending") is None:
            return "reward"
        return "act"

    def after_credit(self, s: EpisodeState) -> str:
        settings = self.settings
        if s.get("error_kind") == "llm" or s.get("attempt", 1) >= settings.max_attempts:
            return "write"
        if time.time() >= s["deadline"] or s.get("steps", 0) >= settings.max_steps:
            return "write"
        reward = s.get("reward")
        wrong = reward is not None and reward < 1.0 and settings.refine_on_wrong_answer
        return "refine" if s.get("answer") is None or wrong else "write"

    # ------------------------------------------------------------------ nodes

    def node_retrieve(self, s: EpisodeState) -> EpisodeState:
        if self.policy is None or self.settings.agent_k() == 0:
            self.log.event(s["run_id"], "retrieval", "off", candidates=[])
            return {"state_vector": None, "candidates": []}
        from memory_agent.policies.base import shortlist

        started = time.perf_counter()
        vector = self.memory.embedder.embed([s["task"]])[0]
        candidates: list[Candidate] = []
        if s["namespace"] in self.memory.namespaces() and self.memory.dim == vector.shape[0]:
            candidates = shortlist(
                self.memory, vector, namespace=s["namespace"], filters=self._showable()
            )
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

    def _candidate_objects(self, s: EpisodeState) -> list[Candidate]:
        cached = self._candidates.get(s["run_id"])
        if cached is not None or s.get("state_vector") is None:
            return cached or []
        # Resumed in a new process: rebuild the shortlist from the checkpointed vector.
        from memory_agent.policies.base import shortlist

        vector = np.asarray(s["state_vector"], dtype=np.float32)
        candidates = shortlist(
            self.memory, vector, namespace=s["namespace"], filters=self._showable()
        )
        self._candidates[s["run_id"]] = candidates
        return candidates

    def _showable(self) -> dict[str, Any] | None:
        """The store filter for the cases the planner's prompt style can show at all.

        The `code` style turns only successful cases into example turns (a small model copies
        what it sees, so a failure would teach it the wrong program). If the policy could pick
        failures, a learned one that ranks an unvisited failure high (its optimistic prior)
        would leave the model with no example; so it chooses among the successes only.
        """
        return {"outcome": "success"} if self.llm.prompt_style == "code" else None

    def node_select(self, s: EpisodeState) -> EpisodeState:
        stage = s.get("stage", "plan")
        excluded = set(s.get("excluded", []))
        pool = [c for c in self._candidate_objects(s) if c.case_id not in excluded]
        if self.policy is None or not pool or s.get("state_vector") is None:
            return {"shown": [], "explored": [], "shown_cases": []}
        started = time.perf_counter()
        vector = np.asarray(s["state_vector"], dtype=np.float32)
        selection = self.policy.select(
            vector, pool, self.settings.agent_k(), stage, explore=s.get("learn", True)
        )
        cases = {c.id: c for c in self.memory.get_many(selection.case_ids)}
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
        )
        return {
            "shown": shown,
            "explored": list(selection.explored[: len(shown)]),
            "shown_cases": shown_cases,
            "all_shown": sorted(set(s.get("all_shown", [])) | set(shown)),
        }

    def _shown(self, s: EpisodeState) -> list[ShownCase]:
        return [ShownCase(**c) for c in s.get("shown_cases", [])]

    def _file_names(self, s: EpisodeState) -> list[str]:
        return [Path(f).name for f in s.get("files", [])]

    def node_plan(self, s: EpisodeState) -> EpisodeState:
        cases = self._shown(s)
        retry = s.get("retry_note")
        if self.llm.prompt_style == "code":
            messages = prompts.code_messages(s["task"], cases, self._file_names(s))
            if retry:
                messages += prompts.code_retry(retry["previous"], retry["observation"])
        else:
            feedback = retry["observation"] if retry else None
            messages = prompts.react_messages(
                s["task"], cases, self._file_names(s), self.tools.describe(), feedback
            )
        update: EpisodeState = {
            "messages": messages,
            "pending": None,
            "answer": None,
            "cited": None,
            "plan": None,
            "output_for_citation": "",
            "error": None,
            "error_kind": None,
        }
        # The reset fields must reach the state too, or a refine attempt would inherit the
        # previous attempt's answer, citation and note.
        update["retry_note"] = None
        return {**update, **self._llm_step({**s, **update}, first=True)}

    def node_act(self, s: EpisodeState) -> EpisodeState:
        pending = s.get("pending") or {"kind": "none"}
        messages = list(s["messages"])
        trajectory = list(s.get("trajectory", []))
        update: EpisodeState = {}
        if pending["kind"] == "tool":
            observation = self._call_tool(s, pending, trajectory)
            update["tool_calls"] = s.get("tool_calls", 0) + 1
            if self.llm.prompt_style == "code":
                # The small model's line was the plan; its output is the answer.
                if observation.ok:
                    lines = [x for x in observation.output.strip().splitlines() if x.strip()]
                    answer = lines[-1].strip() if lines else ""
                    return {**update, "answer": answer, "pending": None, "trajectory": trajectory}
                note = {
                    "previous": pending["args"].get("code", ""),
                    "observation": observation.output,
                }
                return {**update, "pending": None, "trajectory": trajectory, "retry_note": note}
            messages.append(
                {
                    "role": "user",
                    "content": f"{prompts.OBSERVATION_MARKER} {_clip(observation.output)}",
                }
            )
            if update["tool_calls"] >= self.settings.max_tool_calls:
                messages.append(
                    {
                        "role": "user",
                        "content": "The tool budget is used up. Reply now with FINAL ANSWER: ...",
                    }
                )
        else:
            messages.append(
                {
                    "role": "user",
                    "content": "Reply with one line `ACTION: tool "
                    '{"arg": ...}` or `FINAL ANSWER: ...`.',
                }
            )
        stepped = self._llm_step({**s, **update, "messages": messages, "trajectory": trajectory})
        return {**update, **stepped}

    def _llm_step(self, s: EpisodeState, *, first: bool = False) -> EpisodeState:
        """Call the model once on `s["messages"]` and parse its reply into the state."""
        run_id = s["run_id"]
        trajectory = list(s.get("trajectory", []))
        steps = s.get("steps", 0)
        out: EpisodeState = {"messages": s["messages"], "trajectory": trajectory}
        if steps >= self.settings.max_steps:
            return self._fail(
                out, run_id, "limit", f"step limit reached (max_steps={self.settings.max_steps})"
            )
        if time.time() >= s["deadline"]:
            return self._fail(
                out,
                run_id,
                "limit",
                f"task timed out after {self.settings.task_timeout_s:g} s (task_timeout_s)",
            )
        style = self.llm.prompt_style
        stop = [prompts.OBSERVATION_MARKER] if style == "react" else []
        max_tokens = min(self.settings.max_new_tokens, 96) if style == "code" else None
        try:
            reply = self.llm.chat(
                s["messages"],
                max_tokens=max_tokens or self.settings.max_new_tokens,
                stop=stop,
                temperature=self.settings.temperature,
            )
        except Exception as exc:  # any backend failure ends the attempt, never the process
            out["steps"] = steps + 1
            return self._fail(out, run_id, "llm", f"LLM call failed: {type(exc).__name__}: {exc}")
        out["steps"] = steps + 1
        out["prompt_tokens"] = s.get("prompt_tokens", 0) + reply.prompt_tokens
        out["completion_tokens"] = s.get("completion_tokens", 0) + reply.completion_tokens
        self.log.event(
            run_id,
            "llm",
            self.llm.name,
            duration_s=reply.elapsed_s,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            first_token_s=reply.first_token_s,
            reply=_clip(reply.text),
            messages=len(s["messages"]),
            finish_reason=reply.finish_reason,
        )
        trajectory.append(
            {"type": "llm", "text": _clip(reply.text), "tokens": reply.completion_tokens}
        )
        out["messages"] = [*s["messages"], {"role": "assistant", "content": reply.text}]
        citation_text = s.get("output_for_citation", "") + "\n" + reply.text
        out["output_for_citation"] = citation_text
        if style == "code":
            return {**out, **self._parse_code_reply(reply.text)}
        return {**out, **self._parse_react_reply(s, reply.text, first)}

    def _parse_code_reply(self, text: str) -> EpisodeState:
        final = prompts.parse_final(text)
        if final is not None:
            return {"answer": final, "pending": None, "plan": text}
        code = prompts.extract_code(text)
        if code is None:
            # Not Python: the reply itself is the answer (first line, as GAIA wants one).
            lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
            return {"answer": lines[0] if lines else None, "pending": None, "plan": None}
        return {
            "plan": code,
            "pending": {"kind": "tool", "tool": "python", "args": {"code": code}, "problem": None},
        }

    def _parse_react_reply(self, s: EpisodeState, text: str, first: bool) -> EpisodeState:
        out: EpisodeState = {}
        plan = prompts.parse_plan(text)
        if plan and not s.get("plan"):
            out["plan"] = plan
        cited = prompts.parse_used_cases(text, s.get("shown", []))
        if cited is not None and s.get("cited") is None:
            out["cited"] = cited
        action = prompts.parse_action(text)
        if action.kind == "final":
            out["answer"], out["pending"] = action.answer, None
        elif action.kind == "tool":
            out["pending"] = {
                "kind": "tool",
                "tool": action.tool,
                "args": action.args or {},
                "problem": action.problem,
            }
        else:
            out["pending"] = {"kind": "none"}
        if first and not plan and not s.get("plan"):
            out["plan"] = _clip(text, 2_000)
        return out

    def _fail(self, out: EpisodeState, run_id: str, kind: str, message: str) -> EpisodeState:
        self.log.event(run_id, "error", kind, message=message)
        trajectory = list(out.get("trajectory", []))
        trajectory.append({"type": "error", "kind": kind, "message": message})
        return {
            **out,
            "trajectory": trajectory,
            "error": message,
            "error_kind": kind,
            "pending": None,
        }

    def _call_tool(
        self, s: EpisodeState, pending: dict[str, Any], trajectory: list[dict[str, Any]]
    ) -> ToolResult:
        name, args = str(pending.get("tool")), pending.get("args") or {}
        started = time.perf_counter()
        remaining = s["deadline"] - time.time()
        if pending.get("problem"):
            result = ToolResult(
                False,
                f"Error: could not read the call to {name}: "
                f"{pending['problem']}. Write ACTION: {name} {{...JSON...}}.",
            )
        elif s.get("tool_calls", 0) >= self.settings.max_tool_calls:
            result = ToolResult(
                False,
                f"Error: tool budget used up (max_tool_calls="
                f"{self.settings.max_tool_calls}); give the FINAL ANSWER.",
            )
        elif name not in self.tools:
            result = ToolResult(
                False,
                f"Error: unknown tool {name!r}; available tools: {', '.join(self.tools.names())}.",
            )
        elif remaining <= 0:
            result = ToolResult(False, "Error: the task's time budget is used up.")
        else:
            timeout = max(0.5, min(self.settings.tool_timeout_s, remaining))
            context = ToolContext(
                workspace=self.workspace(s["run_id"]),
                files=tuple(Path(f) for f in s.get("files", [])),
                timeout_s=timeout,
                memory_mb=self.settings.sandbox_memory_mb,
            )
            result = self._run_tool(name, args, context, timeout)
        duration = time.perf_counter() - started
        self.log.event(
            s["run_id"],
            "tool",
            name,
            duration_s=duration,
            args=_jsonable(args),
            ok=result.ok,
            output=_clip(result.output),
            data=_jsonable(result.data),
        )
        trajectory.append(
            {
                "type": "tool",
                "tool": name,
                "args": _jsonable(args),
                "ok": result.ok,
                "output": _clip(result.output, 2_000),
            }
        )
        return result

    def _run_tool(
        self, name: str, args: dict[str, Any], context: ToolContext, timeout: float
    ) -> ToolResult:
        tool = self.tools.get(name)
        # A thread bounds tools that have no timeout of their own; the sandbox kills its
        # process itself, so the grace period only matters for in-process tools.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = pool.submit(tool.run, args, context)
        try:
            return future.result(timeout=timeout + 5)
        except concurrent.futures.TimeoutError:
            return ToolResult(False, f"Error: {name} timed out after {timeout:g} s.")
        except Exception as exc:  # a broken tool is an observation, not a crash
            return ToolResult(False, f"Error: {name} failed: {type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def workspace(self, run_id: str) -> Path:
        return self.settings.home / "workspaces" / run_id

    def node_reward(self, s: EpisodeState) -> EpisodeState:
        truth = s.get("ground_truth")
        if s.get("error_kind") == "llm":
            return {"reward": None, "reward_source": None}
        if truth is None:
            return self._judge(s)
        from memory_agent.evals.scorer import question_scorer

        reward = 1.0 if question_scorer(s.get("answer"), truth) else 0.0
        self.log.event(s["run_id"], "reward", "ground_truth", reward=reward, answer=s.get("answer"))
        return {"reward": reward, "reward_source": "ground_truth"}

    def _judge(self, s: EpisodeState) -> EpisodeState:
        """A judge model's YES/NO on the answer; no reward when there is no judge or answer."""
        answer = s.get("answer")
        if self.judge is None or answer is None:
            return {"reward": None, "reward_source": None}
        messages: list[Message] = [
            {"role": "system", "content": prompts.JUDGE_SYSTEM},
            {"role": "user", "content": f"Task: {s['task']}\nAnswer: {answer}"},
        ]
        try:
            reply = self.judge.chat(messages, max_tokens=8, temperature=0.0)
        except Exception as exc:  # a failed judge leaves the reward to later feedback
            self.log.event(s["run_id"], "error", "judge", message=f"{type(exc).__name__}: {exc}")
            return {"reward": None, "reward_source": None}
        verdict = prompts.parse_verdict(reply.text)
        self.log.event(
            s["run_id"], "reward", "judge", duration_s=reply.elapsed_s,
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            reward=verdict, reply=_clip(reply.text, 200),
        )  # fmt: skip
        return {
            "reward": verdict,
            "reward_source": None if verdict is None else "judge",
            "prompt_tokens": s.get("prompt_tokens", 0) + reply.prompt_tokens,
            "completion_tokens": s.get("completion_tokens", 0) + reply.completion_tokens,
        }

    def node_credit(self, s: EpisodeState) -> EpisodeState:
        shown_cases = self._shown(s)
        cited = s.get("cited")
        if not shown_cases:
            used, citation = [], "none"
        elif cited is not None:
            used, citation = list(cited), "cited"
        else:
            used = prompts.infer_used(s.get("output_for_citation", ""), shown_cases)
            citation = "inferred"
        out: EpisodeState = {"cases_used": used, "citation": citation}
        reward = s.get("reward")
        if not s.get("learn", True) or reward is None or not shown_cases:
            return out
        stage = s.get("stage", "plan")
        if not policy_owns_stats(self.policy):
            credit_cases(self.memory, used, stage, reward)
        self.log.event(
            s["run_id"],
            "credit",
            stage,
            used=used,
            shown=s.get("shown", []),
            reward=reward,
            citation=citation,
        )
        feedback = {
            "stage": stage,
            "shown": s.get("shown", []),
            "used": used,
            "reward": reward,
            "citation": citation,
        }
        out["feedback"] = [*s.get("feedback", []), feedback]
        return out

    def node_refine(self, s: EpisodeState) -> EpisodeState:
        note = s.get("retry_note")
        if note is None:
            answer = s.get("answer")
            reason = s.get("error") or (
                "no answer was given" if answer is None else f"the answer {answer!r} was wrong"
            )
            note = {"previous": s.get("plan") or "", "observation": reason}
        self.log.event(
            s["run_id"],
            "refine",
            "refine",
            attempt=s.get("attempt", 1) + 1,
            reason=note["observation"][:500],
        )
        return {
            "stage": "refine",
            "attempt": s.get("attempt", 1) + 1,
            "excluded": sorted(set(s.get("excluded", [])) | set(s.get("shown", []))),
            "retry_note": note,
            "error": None,
            "error_kind": None,
        }

    def node_write(self, s: EpisodeState) -> EpisodeState:
        if not s.get("learn", True) or s.get("error_kind") == "llm":
            return {"case_id": None}
        if not s.get("plan") and s.get("answer") is None:
            return {"case_id": None}
        from memory_agent.store import NewCase

        reward = s.get("reward")
        case = NewCase(
            task=s["task"],
            plan=s.get("plan"),
            trajectory=s.get("trajectory", []),
            answer=s.get("answer"),
            reward=reward,
            outcome=outcome_for(reward, s.get("answer")),
            source="agent",
            meta={
                "run_id": s["run_id"],
                "model": self.llm.name,
                "citation": s.get("citation"),
                "cases_used": s.get("cases_used", []),
            },
        )
        started = time.perf_counter()
        vector = s.get("state_vector")
        usable = vector is not None and self.memory.dim in (None, len(vector))
        try:
            ids = self.memory.add_many(
                [case],
                namespace=s["namespace"],
                skip_duplicates=True,
                embeddings=np.asarray([vector], dtype=np.float32) if usable else None,
            )
        except MemoryAgentError as exc:
            self.log.event(s["run_id"], "error", "memory", message=str(exc))
            return {"case_id": None}
        case_id = ids[0] if ids else None
        self.log.event(
            s["run_id"],
            "memory",
            "write",
            duration_s=time.perf_counter() - started,
            case_id=case_id,
            duplicate=not ids,
        )
        return {"case_id": case_id}

    def node_update_policy(self, s: EpisodeState) -> EpisodeState:
        if self.policy is None or not s.get("learn", True) or s.get("state_vector") is None:
            return {}
        from memory_agent.policies.base import Feedback

        vector = np.asarray(s["state_vector"], dtype=np.float32)
        for item in s.get("feedback", []):
            started = time.perf_counter()
            try:
                self.policy.update(
                    Feedback(
                        namespace=s["namespace"],
                        stage=item["stage"],
                        state=vector,
                        shown=item["shown"],
                        used=item["used"],
                        reward=item["reward"],
                        citation="inferred" if item["citation"] == "inferred" else "cited",
                    )
                )
            except (MemoryAgentError, InvalidInputError, ValueError) as exc:
                self.log.event(s["run_id"], "error", "policy_update", message=str(exc))
                continue
            self.log.event(
                s["run_id"],
                "policy_update",
                self.policy.name,
                duration_s=time.perf_counter() - started,
                **item,
            )
        return {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def initial_state(
    *,
    run_id: str,
    task: str,
    namespace: str,
    files: Sequence[Path],
    ground_truth: str | None,
    learn: bool,
    timeout_s: float,
) -> EpisodeState:
    return {
        "run_id": run_id,
        "task": task,
        "namespace": namespace,
        "files": [str(f) for f in files],
        "ground_truth": ground_truth,
        "learn": learn,
        "deadline": time.time() + timeout_s,
        "stage": "plan",
        "attempt": 1,
        "excluded": [],
        "steps": 0,
        "tool_calls": 0,
        "trajectory": [],
        "feedback": [],
        "all_shown": [],
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "messages": [],
    }


__all__ = ["Episode", "initial_state", "outcome_for"]
