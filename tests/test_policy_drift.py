"""Drift without an LLM: a family's task format changes mid-stream, so the worked examples that
earned high values before the change now give wrong answers, and a correction stored at the
change is the case most similar to the new tasks. The learned policy must show it.

This is the failure BENCHMARKS.md records on the LLM stream (`eval stream --drift`, issue 13):
`value` kept showing the old count_bits examples on hexadecimal tasks and never showed the
correction again after it had been shown once beside them in a failed episode. Here the same
stream runs through the real store, the real MiniLM and the real `ValuePolicy`; the planner is
scripted (it copies the procedure the shown cases of the task's family agree on, as the small
model did: one new-format example among stale ones is drowned out).

The policy runs with the drift rules (`DRIFT_RULES`, the defaults): they hold only for a task
whose neighbourhood shows a drop (`policy.drift_scope=on_drop`), because applied to every
task they cost 3.7 points of the oracle ratio on `bench policy`. Without the rules the
correction is never shown (`test_without_the_rules_the_correction_is_buried`: the scenario
still needs them).

Showing the correction is not enough (`test_held_out_new_format_tasks_are_solved`): with
about ten stale examples per family, each failed new-format episode showed a fresh trio of
stale ones never tried on the new format, and the planner copies the majority. Since the
onset of a drop only outcomes after it count (`policy.drift_history=since_onset`), as
similarity does implicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory_agent.policies.base import Feedback
from memory_agent.policies.similarity import SimilarityPolicy
from memory_agent.policies.track import TrackPolicy
from memory_agent.policies.value import ValuePolicy
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

STAGE = "plan"
FAMILIES = ("count_bits", "spell_backward", "sort_letters")
WORDS = ("planet", "garden", "silver", "window", "rocket", "forest", "candle", "market",
         "bridge", "pepper", "castle", "marble")  # fmt: skip
BEFORE, AFTER, HELD_OUT = 15, 9, 3  # tasks before the change, after it, and held out
# A new case most similar to the task keeps the task prior rather than its stale look-alikes'
# values, and a failed episode does not mark down a case the planner passed over untried;
# both only where outcomes on tasks like this one dropped. These are the defaults.
DRIFT_RULES: dict[str, Any] = {
    "failed_unused": "spare_untried", "neighbour_margin": 0.0, "neighbour_margin_scope": "nearest",
    "drift_scope": "on_drop",
}  # fmt: skip


class DriftStream:
    """Tasks of three families; count_bits changes format (decimal -> hexadecimal) at the
    change, like `evals/stream_families.py`'s drift. Cases carry their (family, format)."""

    def __init__(self, memory: CaseMemory, policy: ValuePolicy, embedder: Any, seed: int):
        self.memory, self.policy, self.embedder = memory, policy, embedder
        self.rng = np.random.default_rng(seed)
        self.kind: dict[int, tuple[str, str]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        # The chance that a lone new-format example among stale ones wins in a training
        # episode (the small model did sometimes: 1 in 10 for `value` on the LLM stream).
        self.lucky = 0.0

    def task(self, family: str, fmt: str) -> str:
        number = int(self.rng.integers(1_000, 10**9))
        word = WORDS[int(self.rng.integers(len(WORDS)))]
        if family == "count_bits" and fmt == "hex":
            return ("How many 1 bits are there in the binary representation of the hexadecimal "
                    f"number {number:x}?")  # fmt: skip
        if family == "count_bits":
            return f"How many 1 bits are there in the binary representation of the number {number}?"
        if family == "spell_backward":
            return f"Spell this word backward (example: sun -> nus): {word}"
        return ("Spell this word with its letters in alphabetical order (example: sun -> nsu): "
                f"{word}")  # fmt: skip

    def embed(self, text: str) -> np.ndarray:
        if text not in self.vectors:
            self.vectors[text] = self.embedder.embed([text])[0]
        return self.vectors[text]

    def store(self, text: str, family: str, fmt: str) -> int:
        case = self.memory.add(text, plan=f"{family} ({fmt})", reward=1.0, outcome="success",
                               embedding=self.embed(text))  # fmt: skip
        self.kind[case.id] = (family, fmt)
        return case.id

    def outcome(self, family: str, fmt: str, shown: list[int]) -> tuple[bool, list[int]]:
        """The scripted planner: it follows the shown cases of the task's family; it succeeds
        if those in the task's format outnumber those in another, and cites what it copied."""
        right = [i for i in shown if self.kind[i] == (family, fmt)]
        stale = [i for i in shown if self.kind[i][0] == family and self.kind[i][1] != fmt]
        if right and len(right) > len(stale):
            return True, right
        if right and self.lucky > 0.0 and self.rng.random() < self.lucky:
            return True, right
        return False, stale or shown[:1]

    def feedback(self, text: str, shown: list[int], used: list[int], ok: bool) -> None:
        self.policy.update(Feedback("default", STAGE, self.embed(text), shown, used,
                                    1.0 if ok else 0.0))  # fmt: skip

    def episode(self, family: str, fmt: str) -> bool:
        """One training task: select (exploring), act, learn, keep a success as a case."""
        text = self.task(family, fmt)
        state = self.embed(text)
        candidates = self.memory.candidates(state, size=50)
        shown = self.policy.select(state, candidates, 3, STAGE).case_ids
        ok, used = self.outcome(family, fmt, shown)
        self.feedback(text, shown, used, ok)
        if ok:
            self.store(text, family, fmt)
        return ok

    def shown_greedy(self, text: str) -> list[int]:
        state = self.embed(text)
        candidates = self.memory.candidates(state, size=50)
        return self.policy.select(state, candidates, 3, STAGE, explore=False).case_ids


def drift_stream(
    minilm: Any,
    home: Path,
    seed: int,
    rules: dict[str, Any],
    *,
    before: int = BEFORE,
    solved_by: list[bool] | None = None,
    policy_name: str = "value",
    after: int = AFTER,
    lucky: float = 0.0,
) -> tuple[list[bool], list[bool]]:
    """Run the stream; per held-out new-format task, whether the correction was the most
    similar case and whether the policy showed it (greedy). `solved_by` receives, per
    held-out task, whether the scripted planner solves it with what the policy shows."""
    settings = Settings(home=home, policy=rules)
    with CaseMemory(settings, embedder=minilm) as memory:
        policy: Any = (
            SimilarityPolicy() if policy_name == "similarity"
            else TrackPolicy(memory, settings) if policy_name == "track"
            else ValuePolicy(memory, settings, seed=seed)
        )  # fmt: skip
        stream = DriftStream(memory, policy, minilm, seed)
        worked = {f: stream.store(stream.task(f, "decimal"), f, "decimal") for f in FAMILIES}
        solved = [stream.episode(FAMILIES[i % 3], "decimal") for i in range(before)]
        assert all(solved[::3])  # before the change, the count_bits examples work
        old = worked["count_bits"]
        if policy_name == "value":
            earned = memory.get(old).stats[STAGE]
            assert earned.q_value > 0.6 and earned.visits >= 5  # the old example earned it
        correction = stream.store(stream.task("count_bits", "hex"), "count_bits", "hex")
        # The record of the LLM stream: at the first new-format task the correction was shown
        # beside stale examples, the planner copied a stale one, and the episode failed.
        first = stream.task("count_bits", "hex")
        stale = [i for i, k in stream.kind.items() if k == ("count_bits", "decimal")]
        shown = [old, max(stale), correction]
        ok, used = stream.outcome("count_bits", "hex", shown)
        assert not ok and correction not in used
        stream.feedback(first, shown, used, ok)
        stream.lucky = lucky
        for i in range(after):
            family = FAMILIES[i % 3]
            stream.episode(family, "hex" if family == "count_bits" else "decimal")
        stream.lucky = 0.0  # held out: the strict planner
        held_out = [stream.task("count_bits", "hex") for _ in range(HELD_OUT)]
        nearest = [memory.candidates(stream.embed(t), size=50)[0].case_id for t in held_out]
        picks = [stream.shown_greedy(t) for t in held_out]
        if solved_by is not None:
            solved_by.extend(stream.outcome("count_bits", "hex", p)[0] for p in picks)
        return [i == correction for i in nearest], [correction in p for p in picks]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correction_is_shown_after_a_format_change(
    minilm: Any, isolated_home: Path, seed: int
) -> None:
    nearest, shown = drift_stream(minilm, isolated_home, seed, DRIFT_RULES)
    assert all(nearest)  # the correction is the case most similar to a new-format task ...
    assert all(shown)  # ... and the policy shows it: old values must not bury it


def test_the_default_shows_the_correction(minilm: Any, isolated_home: Path) -> None:
    assert all(Settings().policy.model_dump()[k] == v for k, v in DRIFT_RULES.items())
    nearest, shown = drift_stream(minilm, isolated_home, 0, {})
    assert all(nearest)
    assert all(shown)


def test_without_the_rules_the_correction_is_buried(minilm: Any, isolated_home: Path) -> None:
    """The control: without the drift rules (what main did before issue 13's fix) the
    correction is shown on none of the held-out tasks, so the tests above test the rules."""
    off = {"failed_unused": "zero", "neighbour_margin": 2.0}
    nearest, shown = drift_stream(minilm, isolated_home, 0, off)
    assert all(nearest)
    assert not any(shown)


# The LLM stream stores about ten successes per family before the change, so each failed
# new-format episode can show a fresh trio of stale examples never tried on the new format,
# and has about ten new-format training tasks after it, where a lone correction sometimes won.
MANY_BEFORE, MANY_AFTER, LUCKY = 30, 30, 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_new_format_tasks_are_solved(minilm: Any, isolated_home: Path, seed: int) -> None:
    """Showing the correction is not enough: the planner copies what most shown examples of
    the family do, so the new-format cases must outnumber the stale ones (what the small
    model needed on the LLM stream: `value` 1/10 where similarity solved 10/10). Similarity
    does on the same stream; `value` with its defaults must too."""
    by_similarity: list[bool] = []
    drift_stream(minilm, isolated_home / "similarity", seed, {}, before=MANY_BEFORE,
                 after=MANY_AFTER, lucky=LUCKY, solved_by=by_similarity,
                 policy_name="similarity")  # fmt: skip
    assert all(by_similarity)
    by_value: list[bool] = []
    drift_stream(minilm, isolated_home / "value", seed, {}, before=MANY_BEFORE,
                 after=MANY_AFTER, lucky=LUCKY, solved_by=by_value)  # fmt: skip
    assert all(by_value)


def test_without_the_onset_rule_stale_examples_fill_the_slots(
    minilm: Any, isolated_home: Path
) -> None:
    """The control: counting every outcome (`drift_history=all`, main before this rule) the
    held-out tasks of seed 2 show stale examples beside the correction, or only stale ones,
    and fail: the test above tests the rule."""
    by_value: list[bool] = []
    drift_stream(minilm, isolated_home, 2, {"drift_history": "all"}, before=MANY_BEFORE,
                 after=MANY_AFTER, lucky=LUCKY, solved_by=by_value)  # fmt: skip
    assert not any(by_value)
