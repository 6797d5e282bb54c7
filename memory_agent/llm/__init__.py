"""Chat-model backends behind one interface, chosen by settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory_agent.llm.base import ChatModel, ChatReply, Message, PromptStyle

if TYPE_CHECKING:
    from memory_agent.settings import Settings

LOCAL_MODELS = ("smollm2-135m",)

__all__ = ["LOCAL_MODELS", "ChatModel", "ChatReply", "Message", "PromptStyle", "make_chat_model"]


def make_chat_model(settings: Settings) -> ChatModel:
    """The backend the settings ask for: the embedded SmolLM2 unless a base URL or another
    model name points at an OpenAI-compatible endpoint."""
    style_override = (
        None if settings.runtime.prompt_style == "auto" else settings.runtime.prompt_style
    )
    if settings.runtime.base_url is None and settings.runtime.model in LOCAL_MODELS:
        from memory_agent.llm.local import LocalChatModel

        local = LocalChatModel(name=settings.runtime.model, threads=settings.runtime.local_threads)
        if style_override:
            local.prompt_style = style_override
        return local
    from memory_agent.llm.openai_compat import OpenAIChatModel

    return OpenAIChatModel(
        settings.runtime.model,
        base_url=settings.runtime.base_url,
        api_key=settings.runtime.api_key,
        timeout_s=settings.runtime.llm_timeout_s,
        max_retries=settings.runtime.llm_max_retries,
        prompt_style=style_override or "react",
    )
