"""Training examples for a skill: the memory's successful cases in the chat format the runtime
prompts the local model with (runtime/prompts.py `code` style), the target being the case's
plan (the line of Python that answered it)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memory_agent.runtime.prompts import ShownCase, code_messages
from memory_agent.skills.errors import NoTrainingCasesError

if TYPE_CHECKING:
    from memory_agent.store import Case, CaseMemory

PAGE = 500


@dataclass(frozen=True)
class CaseFilter:
    """Which successful cases train a skill: all of a namespace, those whose task contains
    `text` (case-insensitive), or those of an evaluation `family` (a case's meta "family", or
    an eval task id ending in -<family>, as the reasoning-gym stream writes them)."""

    namespace: str
    text: str | None = None
    family: str | None = None

    def describe(self) -> str:
        parts = [f"namespace {self.namespace!r}"]
        if self.text:
            parts.append(f"task containing {self.text!r}")
        if self.family:
            parts.append(f"family {self.family!r}")
        return ", ".join(parts)

    def accepts(self, case: Case) -> bool:
        if case.outcome != "success" or not (case.plan or "").strip():
            return False
        if self.text and self.text.lower() not in case.task.lower():
            return False
        if self.family:
            meta = case.meta or {}
            task_id = str(meta.get("task_id") or "")
            if meta.get("family") != self.family and not task_id.endswith(f"-{self.family}"):
                return False
        return True


def successful_cases(memory: CaseMemory, chosen: CaseFilter) -> list[Case]:
    """The live successful cases the filter accepts, oldest first, one per (task, plan)."""
    found: list[Case] = []
    offset = 0
    if chosen.namespace not in memory.namespaces():
        return []
    while True:
        page = memory.list_cases(chosen.namespace, limit=PAGE, offset=offset)
        found.extend(c for c in page if chosen.accepts(c))
        if len(page) < PAGE:
            break
        offset += PAGE
    seen: set[tuple[str, str]] = set()
    unique = []
    for case in sorted(found, key=lambda c: c.id):
        key = (case.task.strip(), (case.plan or "").strip())
        if key not in seen:
            seen.add(key)
            unique.append(case)
    return unique


@dataclass(frozen=True)
class Split:
    train: list[Case]
    held_out: list[Case]


def split_cases(cases: Sequence[Case], held_out_fraction: float, seed: int, what: str) -> Split:
    """A seeded train / held-out split; at least one case on each side."""
    if len(cases) < 2:
        raise NoTrainingCasesError(
            f"Training a skill needs at least 2 successful cases with a plan (one is held out "
            f"to stop training in time); found {len(cases)} for {what}. Run tasks with "
            "ground truth (`memory-agent run TASK --answer ...`) or import solved cases "
            "(`memory-agent memory import`), or widen --filter/--family/--namespace."
        )
    order = list(cases)
    random.Random(seed).shuffle(order)
    held = min(len(order) - 1, max(1, round(len(order) * held_out_fraction)))
    return Split(train=order[held:], held_out=order[:held])


def as_shown(case: Case) -> ShownCase:
    return ShownCase(case.id, case.task, case.plan, case.answer, case.outcome)


@dataclass(frozen=True)
class Example:
    """Token ids of one conversation and how many of them are prompt (not learned)."""

    ids: list[int]
    prompt_len: int


def encode(tokenizer: Any, case: Case, context: Sequence[Case], max_length: int) -> Example | None:
    """The runtime's conversation for `case.task` (with `context` as earlier memory turns)
    followed by the case's plan as the model's reply; None if it is longer than
    `max_length` tokens (cutting it would train on a prompt the runtime never writes)."""
    messages = code_messages(case.task, [as_shown(c) for c in context], [])
    prompt: list[int] = list(
        tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, tokenize=True,
            return_dict=False,
        )
    )  # fmt: skip
    reply = [*messages, {"role": "assistant", "content": (case.plan or "").strip()}]
    full: list[int] = list(tokenizer.apply_chat_template(reply, tokenize=True, return_dict=False))
    if full[: len(prompt)] != prompt:  # a template that re-renders earlier turns: keep it simple
        return None
    target = full[len(prompt) :]
    # The template ends the turn with <|im_end|> and a newline; learning the end marker is
    # what makes generation stop, the newline after it is never generated.
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if end in target:
        target = target[: target.index(end) + 1]
    if len(prompt) + len(target) > max_length:
        return None
    return Example(ids=prompt + target, prompt_len=len(prompt))


def build_examples(
    tokenizer: Any,
    cases: Sequence[Case],
    pool: Sequence[Case],
    *,
    max_length: int,
    context_share: float,
    seed: int,
) -> list[Example]:
    """One example per case; with probability `context_share` a different case of `pool`
    comes first as a memory turn, as the runtime shows it, so the skill also works beside
    memory."""
    rng = random.Random(seed)
    examples = []
    for case in cases:
        others = [c for c in pool if c.id != case.id]
        context = [rng.choice(others)] if others and rng.random() < context_share else []
        example = encode(tokenizer, case, context, max_length)
        if example is None and context:
            example = encode(tokenizer, case, [], max_length)
        if example is not None:
            examples.append(example)
    return examples
