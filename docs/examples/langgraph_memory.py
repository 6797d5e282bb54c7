"""A LangGraph app whose long-term memory is the case memory (`CaseStore`).

Each turn of the graph recalls the user's notes most similar to the message (vector search
through the memory's index), answers with them, and stores the message as a new note. The
notes live in the memory's database, so a later run (another process) recalls them too.

    python docs/examples/langgraph_memory.py --home /tmp/lg-demo --user ada \
        "I moved to Lisbon last spring" "My favourite food is grilled sardines"
    python docs/examples/langgraph_memory.py --home /tmp/lg-demo --user ada \
        "Where do I live now?"

Prints one JSON line per turn: the message, the notes recalled (best first) and the reply.
No language model is needed: the reply quotes the recalled notes, which is the part that
shows the store at work.
"""

from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from memory_agent.langgraph import CaseStore
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory


@dataclass
class Context:
    user: str


class Turn(TypedDict, total=False):
    message: str
    recalled: list[dict[str, Any]]
    reply: str


def _notes(runtime: Runtime[Context]) -> tuple[BaseStore, tuple[str, ...]]:
    assert runtime.store is not None, "compile the graph with store=CaseStore(...)"
    return runtime.store, ("users", runtime.context.user, "notes")


def recall(state: Turn, runtime: Runtime[Context]) -> Turn:
    store, namespace = _notes(runtime)
    hits = store.search(namespace, query=state["message"], limit=2)
    return {"recalled": [{"text": h.value["text"], "score": round(h.score or 0.0, 3)}
                         for h in hits]}  # fmt: skip


def respond(state: Turn) -> Turn:
    if not state["recalled"]:
        return {"reply": "I don't know anything about you yet; I'll remember this."}
    return {"reply": "You told me: " + " / ".join(n["text"] for n in state["recalled"])}


def remember(state: Turn, runtime: Runtime[Context]) -> Turn:
    store, namespace = _notes(runtime)
    store.put(namespace, uuid.uuid4().hex, {"text": state["message"]})
    return {}


def build(store: BaseStore) -> Any:
    graph = StateGraph(Turn, context_schema=Context)
    graph.add_node("recall", recall)
    graph.add_node("respond", respond)
    graph.add_node("remember", remember)
    graph.add_edge(START, "recall")
    graph.add_edge("recall", "respond")
    graph.add_edge("respond", "remember")
    graph.add_edge("remember", END)
    return graph.compile(store=store)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="Memory data directory (MEMORY_AGENT_HOME).")
    parser.add_argument("--user", default="demo")
    parser.add_argument("messages", nargs="+")
    args = parser.parse_args(argv)
    settings = Settings(home=args.home) if args.home else Settings()
    with CaseMemory(settings) as memory:
        app = build(CaseStore(memory, fields=["text"]))
        for message in args.messages:
            out = app.invoke({"message": message}, context=Context(user=args.user))
            print(json.dumps({"message": message, "recalled": out["recalled"],
                              "reply": out["reply"]}, ensure_ascii=False), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
