"""A chat model that replays queued replies: the test double for the graph logic."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence

from memory_agent.errors import MemoryAgentError
from memory_agent.llm.base import ChatReply, Message, PromptStyle, cut_at_stop, estimate_tokens


class ScriptedChatModel:
    """Returns the queued replies in order. An `Exception` in the queue is raised instead.

    `calls` keeps every message list it was given, so tests can check what the model saw.
    """

    name = "scripted"

    def __init__(
        self, replies: Iterable[str | BaseException] = (), *, prompt_style: PromptStyle = "react"
    ) -> None:
        self.replies: deque[str | BaseException] = deque(replies)
        self.prompt_style: PromptStyle = prompt_style
        self.calls: list[list[Message]] = []

    def queue(self, *replies: str | BaseException) -> None:
        self.replies.extend(replies)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> ChatReply:
        started = time.perf_counter()
        self.calls.append([dict(m) for m in messages])  # type: ignore[misc]
        if not self.replies:
            raise MemoryAgentError(
                "The scripted chat model has no replies left; queue more with .queue(...)."
            )
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        text, stopped = cut_at_stop(reply, stop)
        return ChatReply(
            text=text,
            prompt_tokens=sum(estimate_tokens(m["content"]) for m in messages),
            completion_tokens=estimate_tokens(text),
            elapsed_s=time.perf_counter() - started,
            finish_reason="stop" if stopped else "end",
        )
