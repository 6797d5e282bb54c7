"""A judge model's verdict on an answer, the reward when there is no ground truth."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory_agent.runtime import prompts
from memory_agent.runtime.state import EpisodeState, EpisodeUpdate

if TYPE_CHECKING:
    from memory_agent.llm.base import ChatModel, Message
    from memory_agent.store.run_log import RunLog


def judge_answer(judge: ChatModel | None, log: RunLog, s: EpisodeState) -> EpisodeUpdate:
    """A judge model's YES/NO on the answer; no reward when there is no judge or answer."""
    answer = s["answer"]
    if judge is None or answer is None:
        return {"reward": None, "reward_source": None}
    messages: list[Message] = [
        {"role": "system", "content": prompts.JUDGE_SYSTEM},
        {"role": "user", "content": f"Task: {s['task']}\nAnswer: {answer}"},
    ]
    try:
        reply = judge.chat(messages, max_tokens=8, temperature=0.0)
    except Exception as exc:  # a failed judge leaves the reward to later feedback
        log.event(s["run_id"], "error", "judge", message=f"{type(exc).__name__}: {exc}")
        return {"reward": None, "reward_source": None}
    verdict = prompts.parse_verdict(reply.text)
    log.event(
        s["run_id"], "reward", "judge", duration_s=reply.elapsed_s,
        prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
        reward=verdict, reply=prompts.clip(reply.text, 200),
    )  # fmt: skip
    return {
        "reward": verdict,
        "reward_source": None if verdict is None else "judge",
        "prompt_tokens": s["prompt_tokens"] + reply.prompt_tokens,
        "completion_tokens": s["completion_tokens"] + reply.completion_tokens,
    }
