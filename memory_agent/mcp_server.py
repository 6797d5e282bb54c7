"""The case memory as an MCP server: `memory-agent mcp` (stdio), built on `MemoryService`.

Tools: retrieve_cases, record_case, report_outcome, list_cases, get_case, delete_case,
memory_stats. Resources: `case://{namespace}/{case_id}` (one case) and
`cases://{namespace}` (its newest cases). A mistake in a call (unknown case, bad reward,
unknown retrieval id) comes back as a tool error carrying the message; the server keeps
serving. Needs the optional `mcp` package: `pip install 'memory-agent[mcp]'`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import Field

from memory_agent.errors import DependencyMissingError, MemoryAgentError
from memory_agent.gaps import MAX_RATE, MIN_RUNS, SIMILAR

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from memory_agent.service import MemoryService

MCP_INSTALL = "pip install 'memory-agent[mcp]'"

INSTRUCTIONS = """\
A long-term memory of solved tasks ("cases") that learns which cases help.
1. Before working on a task, call retrieve_cases with the task: it returns similar past
   cases (task, plan, answer) chosen by a learned policy, and a retrieval_id.
2. After finishing, call report_outcome with that retrieval_id, a reward from 0 (failure)
   to 1 (success), and the case ids that actually helped: the memory learns from it.
3. Call record_case with the task, your plan, your answer and its reward, so later tasks
   can use it.
Namespaces keep separate memories apart (e.g. one per project or user); each call takes one,
and the server's default is used when it is left out."""

T = TypeVar("T")

Namespace = Annotated[
    str | None,
    Field(
        description="Memory namespace (1-128 letters, digits or . _ : @ -); "
        "leave out for the server's default namespace."
    ),
]
CaseId = Annotated[int, Field(description="Id of a case, as retrieve_cases or list_cases gave it.")]


def _load_mcp() -> Any:
    try:
        from mcp.server import mcpserver
    except ImportError as exc:
        raise DependencyMissingError(
            f"The MCP server needs the mcp package (version 2 or later): {MCP_INSTALL}"
        ) from exc
    return mcpserver


def build_server(service: MemoryService) -> MCPServer:
    """An MCP server whose tools and resources call `service`."""
    mcpserver = _load_mcp()
    from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
    from mcp.types import ToolAnnotations

    server: MCPServer = mcpserver.MCPServer("memory-agent", instructions=INSTRUCTIONS)

    def call(operation: Callable[[], T]) -> T:
        """Runs a service call; a deliberate error reaches the client as a tool error."""
        try:
            return operation()
        except MemoryAgentError as exc:
            raise ToolError(str(exc)) from exc

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

    @server.tool(annotations=read_only)
    def retrieve_cases(
        task: Annotated[str, Field(description="The task you are about to work on.")],
        namespace: Namespace = None,
        k: Annotated[
            int | None,
            Field(ge=1, le=100, description="How many cases to return (default: the server's)."),
        ] = None,
    ) -> dict[str, Any]:
        """Past cases that may help with `task`, best first, chosen by the memory's learned
        policy among the most similar stored cases.

        Each case has its task, plan and answer and the reasons it was chosen: `similarity`
        (cosine to your task), `score` (the policy's ranking score), `value` and `visits`
        (what the case has earned so far) and `explored` (true: picked to try it out, not
        because it scored best). Keep `retrieval_id` and pass it to report_outcome once you
        know how the task went."""
        return call(lambda: service.retrieve(task, namespace=namespace, k=k))

    @server.tool(annotations=writes)
    def record_case(
        task: Annotated[str, Field(description="The task that was solved (or attempted).")],
        plan: Annotated[str | None, Field(description="How it was solved: steps, code.")] = None,
        answer: Annotated[str | None, Field(description="The final answer or result.")] = None,
        reward: Annotated[
            float | None,
            Field(ge=0.0, le=1.0, description="How well it went: 0 failure ... 1 success."),
        ] = None,
        namespace: Namespace = None,
    ) -> dict[str, Any]:
        """Store a solved (or failed) task as a new case, so later tasks can retrieve it.
        Returns the new case's id."""
        return {
            "case_id": call(lambda: service.record(task, plan, answer, reward, namespace)),
        }

    @server.tool(annotations=writes)
    def report_outcome(
        retrieval_id: Annotated[str, Field(description="The id retrieve_cases returned.")],
        reward: Annotated[
            float, Field(ge=0.0, le=1.0, description="How the task went: 0 failure ... 1 success.")
        ],
        used_case_ids: Annotated[
            list[int] | None,
            Field(
                description="Ids of the retrieved cases that actually helped; the other shown "
                "cases learn they did not. Leave out if unknown: all shown cases get the reward."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Tell the memory how a task went after retrieve_cases, so it learns which cases
        help: the used cases' learned values move toward the reward. One outcome per
        retrieval. Returns the cases' learned values after the update."""
        return call(lambda: service.report_outcome(retrieval_id, reward, used_case_ids))

    @server.tool(annotations=read_only)
    def list_cases(
        namespace: Namespace = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="Most cases to return.")] = 20,
    ) -> dict[str, Any]:
        """The newest cases of a namespace, with their learned values."""
        return {"cases": call(lambda: service.list(namespace, limit))}

    @server.tool(annotations=read_only)
    def get_case(case_id: CaseId, namespace: Namespace = None) -> dict[str, Any]:
        """One case: task, plan, answer, reward, outcome and learned values per stage."""
        return call(lambda: service.get(case_id, namespace))

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        )  # fmt: skip
    )
    def delete_case(case_id: CaseId, namespace: Namespace = None) -> dict[str, Any]:
        """Remove a case from the memory (it is no longer retrieved or listed)."""
        call(lambda: service.delete(case_id, namespace))
        return {"deleted": case_id}

    @server.tool(annotations=read_only)
    def memory_stats(namespace: Namespace = None) -> dict[str, Any]:
        """How many cases a namespace holds, their storage size, the policy in use and the
        learned value and visits of each case with an outcome (among its newest 1000)."""
        return call(lambda: service.stats(namespace))

    @server.tool(annotations=read_only)
    def find_gaps(
        namespace: Namespace = None,
        similar: Annotated[
            float, Field(ge=0.0, le=1.0, description="Cosine at which tasks count as alike.")
        ] = SIMILAR,
        min_runs: Annotated[
            int, Field(ge=2, description="Fewest runs a gap is made of.")
        ] = MIN_RUNS,
        max_rate: Annotated[
            float, Field(ge=0.0, le=1.0, description="Highest success rate of a gap.")
        ] = MAX_RATE,
    ) -> dict[str, Any]:
        """Kinds of task that keep failing whatever the memory shows (from the outcomes
        reported so far), with the cases shown there: record a worked example for them."""
        return call(
            lambda: service.gaps(namespace, similar=similar, min_runs=min_runs, max_rate=max_rate)
        )

    @server.resource(
        "case://{namespace}/{case_id}",
        name="case",
        description="One stored case of a namespace, as JSON.",
        mime_type="application/json",
    )
    def case_resource(namespace: str, case_id: str) -> str:
        if not case_id.isdigit():
            raise ResourceNotFoundError(f"Case ids are whole numbers; got {case_id!r}.")
        try:
            return json.dumps(service.get(int(case_id), namespace), ensure_ascii=False)
        except MemoryAgentError as exc:
            raise ResourceNotFoundError(str(exc)) from exc

    @server.resource(
        "cases://{namespace}",
        name="cases",
        description="The newest 100 cases of a namespace, as JSON.",
        mime_type="application/json",
    )
    def cases_resource(namespace: str) -> str:
        try:
            return json.dumps(service.list(namespace, 100), ensure_ascii=False)
        except MemoryAgentError as exc:
            raise ResourceNotFoundError(str(exc)) from exc

    return server


def serve(service: MemoryService) -> None:
    """Serve `service` over stdio until the client closes the connection."""
    build_server(service).run("stdio")
