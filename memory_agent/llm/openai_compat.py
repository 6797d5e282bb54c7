"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from memory_agent.errors import MemoryAgentError
from memory_agent.llm.base import ChatReply, Message, PromptStyle, cut_at_stop, estimate_tokens


class LLMCallError(MemoryAgentError):
    """The endpoint failed after its retries."""

    exit_code = 7


class OpenAIChatModel:
    """Chat completions through the `openai` client, with retries (exponential backoff, done
    by the client), a per-call timeout and token usage from the response."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        prompt_style: PromptStyle = "react",
    ) -> None:
        from openai import OpenAI

        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise MemoryAgentError(
                    "No API key for OpenAI: set MEMORY_AGENT_API_KEY or OPENAI_API_KEY, or "
                    "point --base-url at a local OpenAI-compatible server."
                )
            key = "not-needed"  # local servers (llama.cpp, vLLM, Ollama) accept any key
        self.name = model
        self.base_url = base_url
        self.prompt_style: PromptStyle = prompt_style
        self._client: Any = OpenAI(
            base_url=base_url, api_key=key, timeout=timeout_s, max_retries=max_retries
        )

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> ChatReply:
        import openai

        started = time.perf_counter()
        options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if stop:
            options["stop"] = list(stop)[:4]  # the API takes at most four
        try:
            response = self._client.chat.completions.create(
                model=self.name, messages=[dict(m) for m in messages], **options
            )
        except openai.OpenAIError as exc:
            where = self.base_url or "api.openai.com"
            raise LLMCallError(
                f"The chat endpoint {where} failed for model {self.name!r}: {exc}. Check "
                "--base-url/--model (MEMORY_AGENT_BASE_URL, MEMORY_AGENT_MODEL) and the key."
            ) from exc
        choice = response.choices[0]
        text, _ = cut_at_stop(choice.message.content or "", stop)
        usage = response.usage
        return ChatReply(
            text=text.strip(),
            prompt_tokens=int(usage.prompt_tokens)
            if usage
            else sum(estimate_tokens(m["content"]) for m in messages),
            completion_tokens=int(usage.completion_tokens) if usage else estimate_tokens(text),
            elapsed_s=time.perf_counter() - started,
            finish_reason=choice.finish_reason,
        )
