"""The one chat-model interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

Role = Literal["system", "user", "assistant"]
PromptStyle = Literal["code", "react"]


class Message(TypedDict):
    """One chat turn."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatReply:
    """What one call returned, with the figures the run log keeps."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float
    first_token_s: float | None = None
    finish_reason: str | None = None


class ChatModel(Protocol):
    """A chat LLM. `prompt_style` says which protocol it can follow (see runtime/prompts.py)."""

    name: str
    prompt_style: PromptStyle

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> ChatReply: ...


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop sequence, and whether one was found."""
    cut = len(text)
    for marker in stop:
        if marker and (pos := text.find(marker)) != -1:
            cut = min(cut, pos)
    return text[:cut], cut < len(text)


def estimate_tokens(text: str) -> int:
    """A rough count for endpoints that report no usage (about 4 characters a token)."""
    return max(1, len(text) // 4) if text else 0
