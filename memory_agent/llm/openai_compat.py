"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server).

Native tool calls: given `tools` (OpenAI function specs), a call sends them as the API's
`tools` and reads the reply's `tool_calls`. The agent's loop speaks the text protocol of the
`react` style (`ACTION: tool {json}` answered by `OBSERVATION: ...`), so this backend
translates at the edge: a native tool call comes back as an ACTION line, and earlier
ACTION/OBSERVATION turns go out as the API's assistant `tool_calls` and `tool` messages.
A server that refuses `tools` (an error status on the first call that sends them) is
detected, logged, and from then on asked in the text protocol alone, which the react
prompt describes anyway; a server that ignores `tools` is answered in text as well.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from memory_agent.errors import MemoryAgentError
from memory_agent.llm.base import ChatReply, Message, PromptStyle, cut_at_stop, estimate_tokens

log = logging.getLogger(__name__)

# The react protocol's markers (runtime/prompts.py); repeated here so this backend does not
# import the runtime.
ACTION_MARKER = "ACTION:"
OBSERVATION_MARKER = "OBSERVATION:"
# Statuses with which servers refuse a request's `tools` (vLLM 400 without
# --enable-auto-tool-choice, others 404/422/500/501): on the first call with tools, one of
# these means "try without".
TOOLS_REFUSED = (400, 404, 422, 500, 501)


class LLMCallError(MemoryAgentError):
    """The endpoint failed after its retries."""

    exit_code = 7


class _ToolsRefused(Exception):
    pass


def _action_in(text: str) -> tuple[str, str, str] | None:
    """(text before, tool name, JSON arguments) of the last ACTION line of a reply."""
    start = text.rfind(ACTION_MARKER)
    if start == -1:
        return None
    rest = text[start + len(ACTION_MARKER) :].strip()
    name, _, args = rest.partition(" ")
    if not name.isidentifier():
        return None
    return text[:start].strip(), name, args.strip() or "{}"


def api_messages(
    messages: Sequence[Message], tool_names: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The conversation as the API takes it. With `tool_names` (native tool calls), an
    assistant turn ending in an ACTION for one of them, answered by an OBSERVATION, becomes
    an assistant `tool_calls` message and a `tool` message."""
    out: list[dict[str, Any]] = []
    names = set(tool_names or ())
    call_id: str | None = None
    for i, message in enumerate(messages):
        content = message["content"]
        if (
            call_id is not None
            and message["role"] == "user"
            and content.startswith(OBSERVATION_MARKER)
        ):
            result = content[len(OBSERVATION_MARKER) :].strip()
            out.append({"role": "tool", "tool_call_id": call_id, "content": result})
            call_id = None
            continue
        call_id = None
        action = _action_in(content) if names and message["role"] == "assistant" else None
        following = messages[i + 1] if i + 1 < len(messages) else None
        if (
            action is not None
            and action[1] in names
            and following is not None
            and following["role"] == "user"
            and following["content"].startswith(OBSERVATION_MARKER)
        ):
            before, name, args = action
            call_id = f"call_{i}"
            out.append({
                "role": "assistant", "content": before or None,
                "tool_calls": [{"id": call_id, "type": "function",
                                "function": {"name": name, "arguments": args}}],
            })  # fmt: skip
            continue
        out.append({"role": message["role"], "content": content})
    return out


def _reply_text(message: Any) -> str:
    """The reply's text, with its first native tool call written as an ACTION line (the
    protocol takes one action per reply)."""
    text = message.content or ""
    calls = getattr(message, "tool_calls", None) or []
    if not calls:
        return str(text)
    function = calls[0].function
    args = function.arguments or "{}"
    try:  # one line: the ACTION protocol reads the JSON that follows the name
        args = json.dumps(json.loads(args) if isinstance(args, str) else args, ensure_ascii=False)
    except ValueError:
        pass  # left as sent: the tool call then reports the bad JSON to the model
    if len(calls) > 1:
        log.info("The model asked for %d tool calls in one reply; the first is run.", len(calls))
    return f"{text.strip()}\n{ACTION_MARKER} {function.name} {args}".strip()


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
        native_tools: bool = True,
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
        self.native_tools: bool | None = None if native_tools else False
        """None: not tried yet; True: the server takes `tools`; False: text protocol only."""
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
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> ChatReply:
        """One completion; with `tools` (OpenAI function specs), as native tool calls where
        the server takes them (see the module docstring)."""
        if tools and self.native_tools is not False:
            try:
                reply = self._complete(messages, max_tokens, stop, temperature, tools)
            except _ToolsRefused as refused:
                log.warning(
                    "%s refused native tool calls (%s); using the text protocol (ACTION "
                    "lines) for model %r from now on.",
                    self.base_url or "api.openai.com", refused, self.name,
                )  # fmt: skip
                self.native_tools = False
            else:
                self.native_tools = True
                return reply
        return self._complete(messages, max_tokens, stop, temperature, None)

    def _complete(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> ChatReply:
        import openai

        started = time.perf_counter()
        options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if stop:
            options["stop"] = list(stop)[:4]  # the API takes at most four
        client = self._client
        names = None
        if tools:
            options["tools"] = [dict(t) for t in tools]
            names = [str(t["function"]["name"]) for t in tools]
            if self.native_tools is None:
                # The probe that decides: no retries, or a refusing server costs a backoff.
                client = client.with_options(max_retries=0)
        try:
            response = client.chat.completions.create(
                model=self.name, messages=api_messages(messages, names), **options
            )
        except openai.APIStatusError as exc:
            if tools and self.native_tools is None and exc.status_code in TOOLS_REFUSED:
                raise _ToolsRefused(f"HTTP {exc.status_code}: {exc.message}") from exc
            raise self._failed(exc) from exc
        except openai.OpenAIError as exc:
            raise self._failed(exc) from exc
        choice = response.choices[0]
        text, _ = cut_at_stop(_reply_text(choice.message), stop)
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

    def _failed(self, exc: Exception) -> LLMCallError:
        where = self.base_url or "api.openai.com"
        return LLMCallError(
            f"The chat endpoint {where} failed for model {self.name!r}: {exc}. Check "
            "--base-url/--model (MEMORY_AGENT_BASE_URL, MEMORY_AGENT_MODEL) and the key."
        )
