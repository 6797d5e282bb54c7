"""`track`: similarity ranks, and only a case's own record on tasks like this one moves it.

Real store, real MiniLM, the real `TrackPolicy`; the feedback is what a planner would send
(which shown cases it used, the episode's reward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_policy_drift import (
    LUCKY,
    MANY_AFTER,
    MANY_BEFORE,
    drift_stream,
)

from memory_agent.policies.base import Feedback
from memory_agent.policies.similarity import SimilarityPolicy
from memory_agent.policies.track import TrackPolicy
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory

STAGE = "plan"
BITS = [f"How many 1 bits are there in the binary representation of the number {n}?"
        for n in (1669360679, 88123, 5021, 777, 90210, 31337, 4096, 123456789)]  # fmt: skip
SPELL = [f"Spell this word backward (example: sun -> nus): {w}"
         for w in ("planet", "garden", "silver", "window", "rocket", "forest")]  # fmt: skip


def fill(memory: CaseMemory, minilm: Any) -> dict[str, int]:
    """One case per text, keyed by its text."""
    texts = BITS[:6] + SPELL[:4]
    vectors = minilm.embed(texts)
    return {
        t: memory.add(t, plan="p", reward=1.0, outcome="success", embedding=v).id
        for t, v in zip(texts, vectors, strict=True)
    }


def shown(policy: Any, memory: CaseMemory, minilm: Any, text: str, k: int = 3) -> list[int]:
    state = minilm.embed([text])[0]
    candidates = memory.candidates(state, size=50)
    ids: list[int] = policy.select(state, candidates, k, STAGE, explore=False).case_ids
    return ids


def record_of(track: TrackPolicy, memory: CaseMemory, state: Any, case_id: int) -> float:
    """The record of one case for the task at `state`, as `track` reads it off the shortlist."""
    candidates = memory.candidates(state, size=50)
    record, _ = track.records(state, candidates, STAGE)
    return float(record[[c.case_id for c in candidates].index(case_id)])


def tell(policy: TrackPolicy, minilm: Any, text: str, shown: list[int], used: list[int],
         reward: float) -> None:  # fmt: skip
    state = minilm.embed([text])[0]
    policy.update(Feedback("default", STAGE, state, shown, used, reward, citation="inferred"))


def test_without_a_record_track_ranks_as_similarity(minilm: Any, isolated_home: Path) -> None:
    with CaseMemory(Settings(home=isolated_home), embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        for text in (BITS[6], BITS[7], SPELL[4], SPELL[5]):
            assert shown(track, memory, minilm, text) == shown(
                SimilarityPolicy(), memory, minilm, text
            )


def test_records_on_another_kind_of_task_leave_the_ranking_alone(
    minilm: Any, isolated_home: Path
) -> None:
    with CaseMemory(Settings(home=isolated_home), embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        before = shown(track, memory, minilm, BITS[7])
        # Failures on spelling tasks of the very cases a bit-counting task is shown.
        for text in SPELL[4:]:
            tell(track, minilm, text, before, before, 0.0)
        assert shown(track, memory, minilm, BITS[7]) == before


def test_a_failed_case_gives_way_to_the_next_by_similarity(
    minilm: Any, isolated_home: Path
) -> None:
    with CaseMemory(Settings(home=isolated_home), embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        first = shown(track, memory, minilm, BITS[6], k=4)
        tell(track, minilm, BITS[6], first[:3], [first[0]], 0.0)
        after = shown(track, memory, minilm, BITS[7], k=3)
        assert first[0] not in after  # the case copied in a failure is no longer shown
        assert first[3] in after  # the next by similarity takes its slot


def test_a_case_that_helped_is_shown_before_closer_ones(minilm: Any, isolated_home: Path) -> None:
    settings = Settings(home=isolated_home, policy={"track_rise": 1.0})
    with CaseMemory(settings, embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        ranked = shown(track, memory, minilm, BITS[6], k=6)
        helper = ranked[-1]  # least similar of the six bit-counting cases
        for text in BITS[6:]:
            tell(track, minilm, text, [ranked[0], helper], [helper], 1.0)
        now = shown(track, memory, minilm, BITS[7], k=3)
        assert helper in now  # the sixth by similarity is among the three shown
        assert any(i not in now for i in ranked[1:3])  # ahead of a closer untried case


def test_recent_failures_outweigh_old_successes(minilm: Any, isolated_home: Path) -> None:
    """After a format change the examples that worked for months fail: two failures must
    weigh more than many older successes, or the stale examples keep their slots."""
    with CaseMemory(Settings(home=isolated_home), embedder=minilm) as memory:
        ids = fill(memory, minilm)
        track = TrackPolicy(memory)
        stale = ids[BITS[0]]
        for text in BITS[1:6] * 2:
            tell(track, minilm, text, [stale], [stale], 1.0)
        state = minilm.embed([BITS[7]])[0]
        candidates = memory.candidates(state, size=50)
        position = [c.case_id for c in candidates].index(stale)
        assert track.records(state, candidates, STAGE)[0][position] > 0.7
        for text in BITS[6:8]:
            tell(track, minilm, text, [stale], [stale], 0.0)
        record, weight = track.records(state, candidates, STAGE)
        assert record[position] < 0.5
        assert weight[position] > 0.0


def test_the_record_is_kept_across_restarts(minilm: Any, isolated_home: Path) -> None:
    settings = Settings(home=isolated_home)
    with CaseMemory(settings, embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        first = shown(track, memory, minilm, BITS[6], k=4)
        tell(track, minilm, BITS[6], first[:3], [first[0]], 0.0)
        tell(track, minilm, BITS[7], first[:3], [first[1]], 1.0)
        want = shown(track, memory, minilm, BITS[6], k=4)
        track.save()
    with CaseMemory(settings, embedder=minilm) as memory:
        again = TrackPolicy(memory)
        assert shown(again, memory, minilm, BITS[6], k=4) == want
        assert want != first  # the record did move the ranking


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_track_solves_new_format_tasks_after_a_change(
    minilm: Any, isolated_home: Path, seed: int
) -> None:
    """The drift scenario of tests/test_policy_drift.py (stale examples fail after a format
    change, a correction is stored at it): the held-out new-format tasks are solved."""
    solved: list[bool] = []
    drift_stream(minilm, isolated_home, seed, {}, before=MANY_BEFORE, after=MANY_AFTER,
                 lucky=LUCKY, solved_by=solved, policy_name="track")  # fmt: skip
    assert all(solved)


def _after_a_failure_with_one_used(
    minilm: Any, home: Path, unused_weight: float
) -> tuple[TrackPolicy, Any, Any, int, int]:
    """Three cases shown for BITS[6], the first used, the episode failed: the policy, and the
    record and weight of every candidate for BITS[7] with the positions of the used case and
    of the next one (passed over)."""
    settings = Settings(home=home, policy={"track_unused": unused_weight})
    with CaseMemory(settings, embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        first = shown(track, memory, minilm, BITS[6], k=3)
        tell(track, minilm, BITS[6], first, [first[0]], 0.0)
        state = minilm.embed([BITS[7]])[0]
        candidates = memory.candidates(state, size=50)
        record, weight = track.records(state, candidates, STAGE)
        ids = [c.case_id for c in candidates]
        return track, record, weight, ids.index(first[0]), ids.index(first[1])


def test_unused_weight_zero_ignores_passed_over_cases(minilm: Any, isolated_home: Path) -> None:
    track, record, _, used, passed = _after_a_failure_with_one_used(minilm, isolated_home, 0.0)
    assert record[passed] == pytest.approx(0.5)
    assert record[used] < 0.5
    assert np.isfinite(record).all()
    assert track.unused is None  # nothing loaded or kept that weighs nothing


def test_unused_weight_above_zero_counts_passed_over_cases(
    minilm: Any, isolated_home: Path
) -> None:
    _, record, weight, used, passed = _after_a_failure_with_one_used(minilm, isolated_home, 0.5)
    assert record[used] < record[passed] < 0.5  # passed over: sinks, half as far
    assert 0.0 < weight[passed] < weight[used]


def test_a_failure_sinks_a_case_more_than_a_success_lifts_one(
    minilm: Any, isolated_home: Path
) -> None:
    """By default a success lifts a case a quarter as far as a failure sinks it: a success may
    be a lenient judge's or earned on a look-alike twin's tasks; a strict failure is real."""
    with CaseMemory(Settings(home=isolated_home), embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        first = shown(track, memory, minilm, BITS[6], k=2)
        tell(track, minilm, BITS[6], [first[0]], [first[0]], 1.0)
        tell(track, minilm, BITS[6], [first[1]], [first[1]], 0.0)
        state = minilm.embed([BITS[7]])[0]
        candidates = memory.candidates(state, size=50)
        scores, (record, _) = track.evaluate(state, candidates, STAGE)
        ids = [c.case_id for c in candidates]
        up, down = ids.index(first[0]), ids.index(first[1])
        lift = float(scores[up]) - candidates[up].similarity
        sink = candidates[down].similarity - float(scores[down])
        assert record[up] - 0.5 == pytest.approx(0.5 - record[down], abs=1e-6)
        assert 0.0 < lift < sink / 2


def _record_after(minilm: Any, home: Path, baseline: bool, rewards: list[float]) -> float:
    """The record for BITS[7] of the case shown first for BITS[6], after one episode per
    reward on BITS[6] (each using the two cases then shown, that case among them)."""
    settings = Settings(home=home, policy={"track_baseline": baseline, "track_stale": None})
    with CaseMemory(settings, embedder=minilm) as memory:
        fill(memory, minilm)
        track = TrackPolicy(memory)
        target = shown(track, memory, minilm, BITS[6], k=1)[0]
        for reward in rewards:
            others = [i for i in shown(track, memory, minilm, BITS[6], k=3) if i != target]
            tell(track, minilm, BITS[6], [target, others[0]], [target, others[0]], reward)
        return record_of(track, memory, minilm.embed([BITS[7]])[0], target)


def test_baseline_failures_where_everything_fails_sink_nothing(minilm: Any, tmp_path: Path) -> None:
    """With `track_baseline` an outcome counts against what tasks like this one earn: where
    every episode fails, the case's failures say little against it (the twins-only stream:
    the right example sank with the family's first failure and never came back)."""
    fails = [0.0] * 6
    plain = _record_after(minilm, tmp_path / "plain", False, fails)
    based = _record_after(minilm, tmp_path / "based", True, fails)
    assert plain < 0.3 and 0.4 < based < 0.5


def test_baseline_a_failure_where_others_succeed_sinks_further(minilm: Any, tmp_path: Path) -> None:
    mixed = [1.0] * 5 + [0.0]
    plain = _record_after(minilm, tmp_path / "plain", False, mixed)
    based = _record_after(minilm, tmp_path / "based", True, mixed)
    assert based < plain


def _twin_records(minilm: Any, home: Path, model: str) -> tuple[float, float]:
    """The records of one case for an unseen 1-bit task and for its 0-bit twin, after the
    case succeeded on 1-bit tasks and failed on 0-bit ones (alternating)."""
    settings = Settings(home=home, policy={"track_model": model, "track_stale": None})
    ones = BITS[:6]
    zeros = [t.replace("1 bits", "0 bits") for t in BITS[:6]]
    with CaseMemory(settings, embedder=minilm) as memory:
        case = fill(memory, minilm)[BITS[0]]
        track = TrackPolicy(memory)
        for one, zero in zip(ones, zeros, strict=True):
            tell(track, minilm, one, [case], [case], 1.0)
            tell(track, minilm, zero, [case], [case], 0.0)
        one, zero = minilm.embed([BITS[7], BITS[7].replace("1 bits", "0 bits")])
        return record_of(track, memory, one, case), record_of(track, memory, zero, case)


def test_ridge_records_tell_a_task_from_its_twin(minilm: Any, tmp_path: Path) -> None:
    """MiniLM puts "1 bits in N" and "0 bits in N" closer than two 1-bit tasks with other
    numbers, so the kernel's record is the case's latest outcomes on either; the ridge fit
    finds the direction that tells them apart: high for the kind it helps, low for its twin."""
    one, zero = _twin_records(minilm, tmp_path / "ridge", "ridge")
    assert one > 0.6 and zero < 0.4
    one_k, zero_k = _twin_records(minilm, tmp_path / "kernel", "kernel")
    assert abs(one_k - zero_k) < 0.15 < one - zero


WORDS = [f'How many words contain the letter "e" in the text: "{t}"?'
         for t in ("the green tree", "seven red hens", "one more test here", "we see them",
                   "every level here", "never ever leave")]  # fmt: skip
COUNT_METHOD = "'{t}'.lower().count('e')"  # the look-alike family's method: letters, not words


def _count_method_failed(memory: CaseMemory, minilm: Any) -> tuple[TrackPolicy, Any]:
    """A `track` after a case carrying the count method failed on three words tasks (and the
    vectors of WORDS)."""
    vectors = minilm.embed(WORDS)
    tried = memory.add(WORDS[0], plan=COUNT_METHOD.format(t="the green tree"), reward=1.0,
                       outcome="success", embedding=vectors[0]).id  # fmt: skip
    track = TrackPolicy(memory)
    for text in WORDS[1:4]:
        tell(track, minilm, text, [tried], [tried], 0.0)
    return track, vectors


def _new_lookalike_record(minilm: Any, home: Path, method: bool) -> float:
    """The record, for an unseen words task, of a case stored after another case carrying the
    same (wrong) method failed on words tasks three times; the new case was never shown."""
    settings = Settings(home=home, policy={"track_method": method, "track_stale": None})
    with CaseMemory(settings, embedder=minilm) as memory:
        track, vectors = _count_method_failed(memory, minilm)
        new = memory.add(WORDS[4], plan=COUNT_METHOD.format(t="every level here"), reward=1.0,
                         outcome="success", embedding=vectors[4]).id  # fmt: skip
        return record_of(track, memory, vectors[5], new)


def test_method_records_start_a_new_lookalike_from_its_methods_record(
    minilm: Any, tmp_path: Path
) -> None:
    """With `track_method`, a case never shown starts from the record of the method its plan
    carries on tasks like this one: the twins stream stores look-alikes that used the twin's
    method and were right by chance, each one new and untried."""
    assert _new_lookalike_record(minilm, tmp_path / "off", False) == pytest.approx(0.5)
    assert _new_lookalike_record(minilm, tmp_path / "on", True) < 0.3


def test_method_records_survive_a_restart(minilm: Any, isolated_home: Path) -> None:
    settings = Settings(home=isolated_home, policy={"track_method": True})
    with CaseMemory(settings, embedder=minilm) as memory:
        track, vectors = _count_method_failed(memory, minilm)
        candidates = memory.candidates(vectors[5], size=50)
        before = track.method_records(vectors[5], candidates, STAGE, 0.4, None)
        track.save()
    with CaseMemory(settings, embedder=minilm) as memory:
        again = TrackPolicy(memory).method_records(vectors[5], candidates, STAGE, 0.4, None)
        assert before[0] < 0.3 and again == pytest.approx(before)
