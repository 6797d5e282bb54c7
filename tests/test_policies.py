"""Case-selection policies on real stores (SQLite and PostgreSQL): learn, persist, reject."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.policies.base import Candidate, Feedback
from memory_agent.policies.credit import credit_targets
from memory_agent.policies.exploration import choose
from memory_agent.policies.registry import POLICY_NAMES, make_policy
from memory_agent.policies.value import ValuePolicy
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase, StageStats
from memory_agent.store.case_stats import next_stats

DIM = 384


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def seed_cases(memory: CaseMemory, n: int = 12, namespace: str = "default") -> list[int]:
    rng = np.random.default_rng(7)
    cases = [NewCase(task=f"task {i}", reward=float(i % 2)) for i in range(n)]
    return memory.add_many(cases, namespace=namespace, embeddings=unit(rng, n))


def stats_snapshot(memory: CaseMemory, ids: list[int]) -> dict[int, dict[str, StageStats]]:
    return {c.id: c.stats for c in memory.get_many(ids)}


def feedback(
    state: np.ndarray, shown: list[int], used: list[int], reward: float, **kw: Any
) -> Feedback:
    return Feedback(namespace=kw.pop("namespace", "default"), stage=kw.pop("stage", "plan"),
                    state=state, shown=shown, used=used, reward=reward, **kw)  # fmt: skip


# ---------------------------------------------------------------- pure pieces


def test_registry_knows_every_policy() -> None:
    assert POLICY_NAMES == ("similarity", "value", "neural", "track")
    with pytest.raises(InvalidInputError, match="Unknown policy 'q'"):
        make_policy("q", None)  # type: ignore[arg-type]


def test_cited_credit_rewards_only_used_cases_and_flat_rewards_all() -> None:
    fb = feedback(np.ones(DIM, np.float32), [1, 2, 3], [2], 0.8)
    assert credit_targets(fb, "cited", 0.0) == {1: 0.0, 2: 0.8, 3: 0.0}
    assert credit_targets(fb, "cited", None) == {2: 0.8}
    assert credit_targets(fb, "flat") == {1: 0.8, 2: 0.8, 3: 0.8}
    uncited = feedback(np.ones(DIM, np.float32), [1, 2], [], 0.5, citation="flat")
    assert credit_targets(uncited, "cited") == {1: 0.5, 2: 0.5}


def test_a_failed_episode_teaches_nothing_about_the_cases_the_planner_passed_over() -> None:
    failed = feedback(np.ones(DIM, np.float32), [1, 2, 3], [2], 0.0)
    assert credit_targets(failed, "cited", 0.0, spare_when_failed=[1, 2]) == {2: 0.0, 3: 0.0}
    assert credit_targets(failed, "cited", 0.0) == {1: 0.0, 2: 0.0, 3: 0.0}  # none spared
    solved = feedback(np.ones(DIM, np.float32), [1, 2, 3], [2], 0.8)
    assert credit_targets(solved, "cited", 0.0, spare_when_failed=[1, 3]) == {
        1: 0.0, 2: 0.8, 3: 0.0
    }  # fmt: skip
    assert credit_targets(failed, "flat", spare_when_failed=[1]) == {1: 0.0, 2: 0.0, 3: 0.0}


def test_value_update_averages_early_then_steps_constantly() -> None:
    first = next_stats(None, 1.0, 0.1, q_init=0.5, prior_visits=1.0)
    assert first.visits == 1 and first.q_value == pytest.approx(0.75)  # mean with the prior
    s = first
    for _ in range(200):
        s = next_stats(s, 0.0, 0.1, q_init=0.5, prior_visits=1.0)
    assert s.q_value < 0.01  # a constant step forgets a case that stopped helping
    assert s.visits == 201 and s.reward_sum == pytest.approx(1.0) and s.last_reward == 0.0
    mean = None
    for target in (1.0, 0.0, 1.0, 0.0):
        mean = next_stats(mean, target, None, q_init=0.0, prior_visits=0.0)
    assert mean is not None and mean.q_value == pytest.approx(0.5)


def test_policies_declare_who_writes_case_statistics() -> None:
    from memory_agent.policies.learned import LearnedPolicy
    from memory_agent.policies.neural import NeuralPolicy
    from memory_agent.policies.similarity import SimilarityPolicy

    assert ValuePolicy.owns_case_stats and NeuralPolicy.owns_case_stats
    assert SimilarityPolicy.owns_case_stats is False
    with pytest.raises(TypeError, match="abstract"):
        LearnedPolicy(None)  # type: ignore[abstract, arg-type]


def test_exploration_is_off_when_asked_and_ucb_tries_unvisited_cases() -> None:
    rng = np.random.default_rng(0)
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    visits = np.array([50.0, 50.0, 50.0, 0.0])
    assert choose(scores, visits, 2, mode="none", epsilon=1.0, ucb_c=9.0, rng=rng) == (
        [0, 1],
        [False, False],
    )
    order, explored = choose(scores, visits, 2, mode="ucb", epsilon=0.0, ucb_c=2.0, rng=rng)
    assert 3 in order and explored[order.index(3)]
    picks = {choose(scores, visits, 1, mode="epsilon", epsilon=1.0, ucb_c=0, rng=rng)[0][0]
             for _ in range(50)}  # fmt: skip
    assert picks - {0}


# ---------------------------------------------------------------- on a real store


def test_value_policy_learns_persists_and_survives_restart(
    memory: CaseMemory, database_url: str, isolated_home: Path
) -> None:
    ids = seed_cases(memory)
    state = memory.vectors([ids[0]])[0]
    policy = make_policy("value", memory)
    candidates = memory.candidates(state, size=12)
    assert len(candidates) == 12 and candidates[0].case_id == ids[0]
    greedy = policy.select(state, candidates, 3, "plan", explore=False)
    assert greedy.case_ids[0] == ids[0] and not any(greedy.explored)
    # The planner keeps using the least similar case and ignoring the most similar one.
    loser, winner = candidates[0].case_id, candidates[-1].case_id
    for _ in range(8):
        policy.update(feedback(state, [loser, winner], [winner], 1.0))
    after = stats_snapshot(memory, [loser, winner])
    assert after[winner]["plan"].visits == 8 and after[winner]["plan"].q_value > 0.8
    assert after[loser]["plan"].q_value < 0.2
    assert "refine" not in after[winner]  # values are per stage
    ranked = policy.select(state, memory.candidates(state, size=12), 3, "plan", explore=False)
    assert ranked.case_ids[0] == winner
    why = {c.case_id: c for c in ranked.considered}
    assert why[loser].value is not None and why[loser].value < 0.2 < why[winner].value
    assert why[loser].evidence == why[winner].evidence == 8.0
    # The other cases are unrelated to the task (random directions) and unknown here: they
    # rank after the similar case, known to be weak, that evidence has not yet overturned.
    assert ranked.case_ids[1] == loser

    memory.close()
    reopened = CaseMemory(Settings(home=isolated_home), database_url=database_url)
    try:
        again = make_policy("value", reopened)
        fresh = reopened.candidates(state, size=12)
        assert again.select(state, fresh, 3, "plan", explore=False).case_ids == ranked.case_ids
        assert stats_snapshot(reopened, [winner]) == {winner: after[winner]}
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"reward": math.nan}, InvalidInputError, "not a number in"),
        ({"reward": 1.5}, InvalidInputError, r"\[-1, 1\]"),
        ({"shown": "unknown"}, CaseNotFoundError, "not a live case"),
        ({"shown": "foreign"}, InvalidInputError, "namespace 'other'"),
        ({"used": "stray"}, InvalidInputError, "was not shown"),
        ({"stage": "Plan Stage"}, InvalidInputError, "not a valid stage"),
        ({"state": "short"}, InvalidInputError, "384-dimensional"),
        ({"state": "nan"}, InvalidInputError, "NaN"),
    ],
)
def test_bad_feedback_is_rejected_and_changes_nothing(
    memory: CaseMemory, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    ids = seed_cases(memory)
    foreign = seed_cases(memory, 2, namespace="other")
    state = memory.vectors([ids[0]])[0]
    for name in ("value", "neural"):
        policy = make_policy(name, memory)
        policy.update(feedback(state, ids[:3], [ids[0]], 1.0))
    before = stats_snapshot(memory, ids + foreign)
    values: dict[str, Any] = {"shown": ids[:3], "used": [ids[0]], "reward": 0.5,
                              "stage": "plan", "state": state}  # fmt: skip
    values.update(change)
    if values["shown"] == "unknown":
        values["shown"] = [ids[0], 10_000_000]
    elif values["shown"] == "foreign":
        values["shown"] = [ids[0], foreign[0]]
    if values["used"] == "stray":
        values["used"] = [ids[5]]
    if isinstance(values["state"], str):
        values["state"] = state[:10] if values["state"] == "short" else state * np.nan
    for name in ("value", "neural"):
        policy = make_policy(name, memory)
        with pytest.raises(error, match=message):
            policy.update(feedback(**values))
    assert stats_snapshot(memory, ids + foreign) == before


def test_crash_inside_an_update_transaction_leaves_old_values(memory: CaseMemory) -> None:
    """The connection dies after the first row is written: nothing of the update remains."""
    from sqlalchemy import event

    ids = seed_cases(memory)
    state = memory.vectors([ids[0]])[0]
    policy = ValuePolicy(memory)
    policy.update(feedback(state, ids[:3], [ids[0]], 1.0))
    before = stats_snapshot(memory, ids)
    writes = 0

    def die_on_second_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal writes
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT")):
            writes += 1
            if writes == 2:
                raise RuntimeError("simulated crash mid-update")

    event.listen(memory.engine, "before_cursor_execute", die_on_second_write)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            policy.update(feedback(state, ids[:4], [ids[1], ids[3]], 0.9))
    finally:
        event.remove(memory.engine, "before_cursor_execute", die_on_second_write)
    assert writes == 2
    assert stats_snapshot(memory, ids) == before
    policy.update(feedback(state, ids[:4], [ids[1], ids[3]], 0.9))  # and it carries on
    assert stats_snapshot(memory, [ids[3]])[ids[3]]["plan"].visits == 1


@pytest.mark.parametrize("objective", ["pointwise", "pairwise", "mixed"])
def test_neural_policy_saves_reloads_and_generalises(
    memory: CaseMemory, database_url: str, isolated_home: Path, objective: str
) -> None:
    """Good cases share a direction in embedding space; the net learns it (with each training
    objective) and ranks unseen good cases above unseen bad ones after a restart."""
    rng = np.random.default_rng(3)
    good_dir, bad_dir = unit(rng, 2)

    def family(direction: np.ndarray, n: int) -> np.ndarray:
        v = direction[None, :] * 0.8 + unit(rng, n) * 0.6
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    good = memory.add_many(
        [NewCase(task=f"good {i}") for i in range(12)], embeddings=family(good_dir, 12)
    )
    bad = memory.add_many(
        [NewCase(task=f"bad {i}") for i in range(12)], embeddings=family(bad_dir, 12)
    )
    settings = Settings(
        home=isolated_home, policy={"save_every": 10, "learning_rate": 0.01, "objective": objective}
    )
    from memory_agent.policies.neural import NeuralPolicy

    policy = NeuralPolicy(memory, settings, seed=0)
    for step in range(120):
        shown = [good[step % 8], bad[step % 8], bad[(step + 3) % 8]]
        state = unit(rng, 1)[0]
        policy.score(state, memory.candidates(state, size=24), "plan")
        policy.update(feedback(state, shown, [good[step % 8]], 1.0))
    assert policy.version >= 12  # saved every 10 updates
    policy.save()
    memory.close()

    reopened = CaseMemory(Settings(home=isolated_home), database_url=database_url)
    try:
        again = NeuralPolicy(reopened, settings, seed=1)
        assert again.updates == 120 and again.version == policy.version
        # The replay buffer keeps which feedback each example came from (pairs need it).
        assert set(again._buf_ep[: again._filled].tolist()) == set(range(120))
        state = unit(rng, 1)[0]
        unseen = [c for c in reopened.candidates(state, size=24)
                  if c.case_id in good[8:] + bad[8:]]  # fmt: skip
        scores = again.score(state, unseen, "plan")
        good_scores = [s for c, s in zip(unseen, scores, strict=True) if c.case_id in good]
        bad_scores = [s for c, s in zip(unseen, scores, strict=True) if c.case_id in bad]
        assert min(good_scores) > max(bad_scores)
    finally:
        reopened.close()


def test_runtime_credit_is_a_monte_carlo_mean_of_live_cases(memory: CaseMemory) -> None:
    ids = seed_cases(memory, n=3)
    memory.delete(ids[2])
    memory.case_stats.credit([ids[0], ids[2]], "plan", 1.0)
    memory.case_stats.credit([ids[0], ids[1]], "plan", 0.0)
    stats = memory.case_stats.get(ids)
    assert stats[ids[0]]["plan"] == StageStats(2, 0.5, 1.0, 0.0)
    assert stats[ids[1]]["plan"] == StageStats(1, 0.0, 0.0, 0.0)
    assert stats[ids[2]] == {}


def test_eviction_removes_the_lowest_learned_value_first(memory: CaseMemory) -> None:
    ids = seed_cases(memory, 4)  # rewards 0, 1, 0, 1
    state = memory.vectors([ids[0]])[0]
    policy = ValuePolicy(memory)
    for _ in range(5):  # case 1 (reward 1) keeps being ignored; case 0 (reward 0) helps
        policy.update(feedback(state, [ids[0], ids[1]], [ids[0]], 1.0))
    # Reward alone would evict case 0 first (reward 0, oldest); its learned value keeps it.
    evicted = memory.set_budget("default", 2)
    assert evicted == [ids[2], ids[1]]


def test_candidates_carry_what_policies_need(memory: CaseMemory) -> None:
    ids = seed_cases(memory, 5)
    state = memory.vectors([ids[2]])[0]
    ValuePolicy(memory).update(feedback(state, [ids[2]], [ids[2]], 1.0))
    found = memory.candidates(state, size=5)
    top = found[0]
    assert isinstance(top, Candidate) and top.case_id == ids[2]
    assert top.similarity == pytest.approx(1.0, abs=1e-5) and top.reward == 0.0
    assert np.allclose(top.embedding, state) and top.stats["plan"].visits == 1


_CHILD = """
import sys, numpy as np
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase
from memory_agent.policies.base import Feedback
from memory_agent.policies.neural import NeuralPolicy
home, url = sys.argv[1], sys.argv[2]
memory = CaseMemory(Settings(home=home), database_url=url)
rng = np.random.default_rng(0)
vectors = rng.normal(size=(30, 384)).astype(np.float32)
ids = memory.add_many([NewCase(task=f"case {i}") for i in range(30)], embeddings=vectors)
policy = NeuralPolicy(memory, Settings(home=home, policy={'save_every': 1}), seed=0)
step = 0
while True:
    shown = [int(i) for i in rng.choice(ids, 3, replace=False)]
    state = vectors[int(rng.integers(30))]
    policy.update(Feedback("default", "plan", state, shown, shown[:1], float(rng.random())))
    step += 1
    print(step, flush=True)
"""


@pytest.mark.slow
def test_killed_mid_update_reopens_consistent_and_continues(tmp_path: Path) -> None:
    """SIGKILL a process that updates and saves non-stop; the store reopens clean."""
    import signal
    import subprocess
    import sys

    from memory_agent.policies.neural import NeuralPolicy

    url = f"sqlite:///{tmp_path / 'crash.db'}"
    home = tmp_path / "home"
    done = 0
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(home), url], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            done = int(line)
            if done >= 40:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    memory = CaseMemory(Settings(home=home), database_url=url)
    try:
        cases = memory.list_cases(limit=100)
        visits = sum(c.stats["plan"].visits for c in cases if "plan" in c.stats)
        # Every update credits its three shown cases in one transaction: never a part of one.
        assert visits % 3 == 0 and visits // 3 >= done
        policy = NeuralPolicy(memory, Settings(home=home), seed=1)
        assert policy.version >= done - 1 and policy.updates >= done - 1
        ids = [c.id for c in cases[:3]]
        state = memory.vectors(ids[:1])[0]
        policy.update(feedback(state, ids, ids[:1], 1.0))
        after = sum(
            c.stats["plan"].visits for c in memory.list_cases(limit=100) if "plan" in c.stats
        )
        assert after == visits + 3
    finally:
        memory.close()


def test_task_context_conditions_a_case_value_on_the_task(memory: CaseMemory) -> None:
    from memory_agent.policies.context import TaskContext

    ids = seed_cases(memory)
    rng = np.random.default_rng(3)
    a, b = unit(rng, 2)
    b = b - (b @ a) * a  # a task unrelated to `a`
    b = (b / np.linalg.norm(b)).astype(np.float32)
    context = TaskContext(memory, "test_context", 16)
    for _ in range(4):
        context.add("plan", a, {ids[0]: 1.0})
    candidates = memory.candidates(a, size=12)
    stored_q = np.full(len(candidates), 0.3)
    visits = np.full(len(candidates), 2.0)
    kw: dict[str, Any] = {"q_init": 0.5, "prior_weight": 1.0, "threshold": 0.4}
    pos = [c.case_id for c in candidates].index(ids[0])
    on_a, weight_a = context.values(a, candidates, "plan", stored_q, visits, **kw)
    on_b, weight_b = context.values(b, candidates, "plan", stored_q, visits, **kw)
    assert on_a[pos] == pytest.approx((0.3 + 4.0) / 5.0) and weight_a[pos] == 4.0
    # No outcome on tasks like b: as unknown there as a new case. Its value elsewhere does
    # not count, and nothing was shown for tasks like b, so the prior is q_init.
    assert on_b[pos] == pytest.approx(0.5) and weight_b[pos] == 0.0
    assert context.relevance(b, candidates, "plan", 0.4)[pos] == 0.0
    others = [i for i in range(len(candidates)) if i != pos]
    assert np.array_equal(on_a[others], stored_q[others])  # visited, no history: stored values
    # A case never shown gets the task prior: what shown cases earned on tasks like this
    # one (four episodes at `a` with target 1.0, shrunk towards q_init with weight 1).
    never = np.zeros(len(candidates))
    prior_a, weight_never = context.values(a, candidates, "plan", stored_q, never, **kw)
    assert prior_a[others] == pytest.approx((0.5 + 4.0) / 5.0)
    assert np.all(weight_never[others] == 0.0)
    prior_b, _ = context.values(b, candidates, "plan", stored_q, never, **kw)
    assert prior_b[others] == pytest.approx(0.5)  # nothing shown on tasks like b yet
    context.save()
    again = TaskContext(memory, "test_context", 16)
    reloaded, _ = again.values(a, candidates, "plan", stored_q, visits, **kw)
    assert reloaded[pos] == pytest.approx(on_a[pos], abs=1e-3)
    reloaded_prior, _ = again.values(a, candidates, "plan", stored_q, never, **kw)
    assert reloaded_prior[others] == pytest.approx(prior_a[others], abs=1e-3)


def tasks_like(rng: np.random.Generator, task: np.ndarray) -> np.ndarray:
    """A task like `task`: cosine ~0.98 to it (another wording or other slot values)."""
    v = task + 0.2 * unit(rng, 1)[0]
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_a_drop_is_a_failure_below_what_tasks_like_this_one_earned(memory: CaseMemory) -> None:
    """`policy.drift_scope=on_drop` turns the drift rules on only where outcomes dropped: after
    a run of successes on tasks like this one a failure is a drop; where failures were common
    it is not; on an unrelated task, or with too few outcomes, nothing is."""
    from memory_agent.policies.context import TaskContext

    rng = np.random.default_rng(5)
    a, b = unit(rng, 2)
    context = TaskContext(memory, "drop_context", 16)
    for _ in range(3):
        context.add("plan", tasks_like(rng, a), {1: 1.0}, 1.0)
    assert not context.dropped(a, "plan", 0.4, latest=0.0)  # three outcomes: too few to tell
    for _ in range(3):
        context.add("plan", tasks_like(rng, a), {1: 1.0}, 1.0)
    assert context.dropped(a, "plan", 0.4, latest=0.0)  # six successes, then a failure
    assert not context.dropped(a, "plan", 0.4, latest=0.8)
    assert not context.dropped(a, "plan", 0.4)  # the latest outcome so far was a success
    assert not context.dropped(b, "plan", 0.4, latest=0.0)  # nothing earned on tasks like b
    assert not context.dropped(a, "refine", 0.4, latest=0.0)
    context.add("plan", tasks_like(rng, a), {1: 0.0}, 0.0)
    assert context.dropped(tasks_like(rng, a), "plan", 0.4)  # the failure is now the latest
    context.save()
    assert TaskContext(memory, "drop_context", 16).dropped(a, "plan", 0.4)  # saved with it
    mixed = TaskContext(memory, "mixed_context", 16)
    for i in range(12):
        reward = float(i % 3 != 0)  # a third of the episodes failed
        mixed.add("plan", tasks_like(rng, a), {1: reward}, reward)
    assert not mixed.dropped(a, "plan", 0.4, latest=0.0)


def test_a_noted_drop_sets_aside_what_was_earned_before_it(memory: CaseMemory) -> None:
    """`policy.drift_history=since_onset`: after a drop is noted, only outcomes from its onset
    on count for tasks like it; the drop stays noted after a success and is saved (ticks and
    onsets) with the context."""
    from memory_agent.policies.base import Candidate
    from memory_agent.policies.context import TaskContext

    rng = np.random.default_rng(7)
    a, b = unit(rng, 2)
    context = TaskContext(memory, "onset_context", 16)
    for _ in range(6):
        context.add("plan", tasks_like(rng, a), {1: 1.0, 2: 1.0}, 1.0)
    assert context.noted_onset(a, "plan", 0.4) is None
    context.add("plan", tasks_like(rng, a), {1: 0.0}, 0.0)  # case 1 fails after the change
    context.note_drop(a, "plan", 0.4)
    assert context.noted_onset(a, "plan", 0.4) == 6  # the failure's episode, tick 6
    assert context.noted_onset(b, "plan", 0.4) is None  # not on unrelated tasks
    context.add("plan", tasks_like(rng, a), {3: 1.0}, 1.0)  # a success since: still noted
    context.save()
    loaded = TaskContext(memory, "onset_context", 16)
    assert loaded.noted_onset(a, "plan", 0.4) == 6
    candidates = [Candidate(i, 0.5, a.astype(np.float32), None) for i in (1, 2, 3)]
    ones, visits = np.ones(3), np.full(3, 6.0)
    q, n = loaded.values(a, candidates, "plan", ones, visits, q_init=0.5, prior_weight=1.0,
                         threshold=0.4, model="ridge", since=6)  # fmt: skip
    # Case 1 failed since the onset, case 2 earned only before it (unknown now), case 3
    # succeeded since; the prior is the mean of the episodes since then.
    assert q[0] < q[1] < q[2] and n[1] == 0.0 and n[0] > 0.0 and n[2] > 0.0
    before, _ = loaded.values(a, candidates, "plan", ones, visits, q_init=0.5,
                              prior_weight=1.0, threshold=0.4, model="ridge")  # fmt: skip
    assert before[1] > 0.9  # without the onset, case 2's old successes count


def test_recent_outcomes_keep_the_last_ones_oldest_first() -> None:
    from memory_agent.policies.context import RecentOutcomes

    recent = RecentOutcomes(4)
    assert len(recent) == 0 and list(recent) == []
    for i in range(6):  # wraps around: the first two are forgotten
        recent.append(np.full(2, float(i), np.float32), float(i) / 10)
    assert len(recent) == 4
    assert [y for _, y in recent] == [0.2, 0.3, 0.4, 0.5]
    assert [float(v[0]) for v, _ in recent] == [2.0, 3.0, 4.0, 5.0]
    cosines, rewards = recent.cosines(np.asarray([1.0, 0.0], np.float32))
    assert cosines.tolist() == [2.0, 3.0, 4.0, 5.0] and rewards.tolist() == [0.2, 0.3, 0.4, 0.5]


@pytest.mark.parametrize(("earlier", "spared"), [("successes", True), ("mixed", False)])
def test_on_drop_a_failure_spares_untried_cases_only_where_outcomes_dropped(
    memory: CaseMemory, earlier: str, spared: bool
) -> None:
    settings = memory.settings.replace(
        policy={"failed_unused": "spare_untried", "drift_scope": "on_drop"}
    )
    ids = seed_cases(memory)
    policy = ValuePolicy(memory, settings, seed=0)
    rng = np.random.default_rng(11)
    task = memory.vectors([ids[0]])[0]
    for i in range(8):
        reward = 1.0 if earlier == "successes" or i % 2 else 0.0
        policy.update(feedback(tasks_like(rng, task), [ids[0]], [ids[0]], reward))
    # A failure: the planner used the case that always worked; ids[1] was shown, passed over.
    policy.update(feedback(tasks_like(rng, task), [ids[0], ids[1]], [ids[0]], 0.0))
    untried = stats_snapshot(memory, [ids[1]])[ids[1]].get("plan")
    assert (untried is None or untried.visits == 0) == spared
    # A case with outcomes on tasks like this one is marked down in a failure, drop or not.
    policy.update(feedback(tasks_like(rng, task), [ids[0], ids[2]], [ids[2]], 1.0))
    before = stats_snapshot(memory, [ids[2]])[ids[2]]["plan"].visits
    policy.update(feedback(tasks_like(rng, task), [ids[0], ids[2]], [ids[0]], 0.0))
    assert stats_snapshot(memory, [ids[2]])[ids[2]]["plan"].visits == before + 1


def test_value_earned_on_unrelated_tasks_does_not_count_for_a_task(memory: CaseMemory) -> None:
    ids = seed_cases(memory)
    state = memory.vectors([ids[0]])[0]
    candidates = memory.candidates(state, size=12)
    far = candidates[-1]
    assert far.similarity < 0.15  # unrelated text (random unit vectors in 384 dimensions)
    policy = make_policy("value", memory)
    elsewhere = memory.vectors([far.case_id])[0]  # the tasks it helped with
    for _ in range(8):
        policy.update(feedback(elsewhere, [far.case_id], [far.case_id], 1.0))
    assert stats_snapshot(memory, [far.case_id])[far.case_id]["plan"].q_value > 0.8
    fresh = memory.candidates(state, size=12)
    scores = policy.score(state, fresh, "plan")
    # On its own tasks it now beats every unvisited case; here it is no better than one.
    own = memory.candidates(elsewhere, size=12)
    own_scores = policy.score(elsewhere, own, "plan")
    assert own[int(np.argmax(own_scores))].case_id == far.case_id
    assert fresh[int(np.argmax(scores))].case_id != far.case_id


def test_similarity_gate_admits_cases_proven_on_tasks_like_this(memory: CaseMemory) -> None:
    """MemRL's phase A keeps all but the `policy_recall` most similar cases out; a case that
    earned its value on tasks like this one competes however its text compares."""
    ids = seed_cases(memory)
    state = memory.vectors([ids[0]])[0]
    settings = memory.settings.replace(policy={"recall": 3})
    policy = ValuePolicy(memory, settings, exploration="none", seed=0)
    ranked = sorted(memory.candidates(state, size=12), key=lambda c: -c.similarity)
    proven, unknown = ranked[8].case_id, ranked[9].case_id
    before = policy.select(state, ranked, 3, "plan", explore=False).case_ids
    assert proven not in before and unknown not in before
    for _ in range(4):
        policy.update(feedback(state, [proven], [proven], 1.0))
    after = policy.select(state, memory.candidates(state, size=12), 3, "plan", explore=False)
    assert proven in after.case_ids
    assert unknown not in after.case_ids  # still gated: nothing known of it here


def test_plan_method_masks_the_values_and_keeps_the_procedure() -> None:
    from memory_agent.policies.method import method_id, plan_method

    ones = plan_method("bin(1813382119).count('1')")
    assert ones == plan_method("bin(37).count('0')")
    assert ones == "bin(0).count(S)"
    letters = plan_method("'there s something'.lower().count('m')")
    assert letters == plan_method('"other text".lower().count("e")') == "S.lower().count(S)"
    words = plan_method("sum('u' in w.lower() for w in 'these works'.split())")
    assert words != letters and plan_method("'it\\'s'[::-1]") == "S[::-0]"
    assert plan_method(None) is None and plan_method("  ") is None
    assert method_id(letters) == method_id(letters) != method_id(words) > 0
