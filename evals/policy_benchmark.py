"""The policy benchmark: every policy on the same simulated stream, through the real store.

Each run opens a fresh SQLite store, adds the stream's cases with their MiniLM vectors as
they arrive, and per episode takes the store's shortlist, lets the policy pick K cases,
simulates the planner (evals/policy_stream.py) and feeds the outcome back with the policy's
real `update` (which writes the store). The oracle picks by the hidden utilities. Reported
per policy and credit mode: mean reward over the last 20% of episodes, its ratio to the
oracle's with a 95% interval over seeds, the paired difference to similarity and of cited
minus flat credit (95% intervals over seeds), cumulative regret against the oracle's
expected reward, and the time of `select` and `update` calls. `neural-no-emb` is `neural`
without the case embedding among its inputs (the ablation: what the network gets from
recognising cases rather than from matching them to the task).

`bound` and `bound-task` (evals/policy_bound.py) run only when asked for: not policies but
upper bounds, told the hidden family of every task (and case), which this module passes to
them from the stream. They measure what a learner could reach if it could tell families
apart; their figures must never be read as a policy's.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from memory_agent.evals.extras import eval_extra
from memory_agent.evals.policy_bound import (
    BOUND_KINDS,
    TOLD,
    BoundKind,
    BoundSettings,
    FamilyBound,
)
from memory_agent.evals.policy_stream import (
    SimCase,
    Stream,
    expected_reward,
    make_stream,
    realised_reward,
    use_probability,
)

if TYPE_CHECKING:
    from memory_agent.policies.base import CasePolicy, Vector
    from memory_agent.settings import Settings
    from memory_agent.store import Embedder

PolicyKind = Literal[
    "similarity", "value", "neural", "neural-no-emb", "track", "oracle", "bound", "bound-task"
]
KINDS: tuple[PolicyKind, ...] = (
    "similarity", "value", "neural", "neural-no-emb", "track", "oracle"
)  # fmt: skip
"""The default run."""
ALL_KINDS: tuple[PolicyKind, ...] = (*KINDS, *BOUND_KINDS)
"""Everything `--policies` accepts: the default run and the bounds (told hidden families)."""
LEARNERS: tuple[PolicyKind, ...] = ("value", "neural", "track")
"""Run with cited and with flat credit (the ablation runs with cited credit only)."""
# Two-sided 95% Student t quantiles by degrees of freedom (seeds - 1); beyond 30, normal.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
STAGE = "plan"
NAMESPACE = "bench"


@dataclass
class RunResult:
    policy: str
    credit: str
    seed: int
    rewards: list[float]
    regrets: list[float]
    select_ms: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    shown_families: list[list[int]] = field(default_factory=list)
    """Per episode, the hidden family of each case shown (how often a policy shows a twin's
    or another family's case; the oracle's and the bounds' included)."""

    @property
    def final_reward(self) -> float:
        tail = self.rewards[int(0.8 * len(self.rewards)) :]
        return float(np.mean(tail)) if tail else 0.0

    @property
    def regret(self) -> float:
        return float(np.sum(self.regrets))


def embed_texts(embedder: Embedder, texts: Sequence[str]) -> dict[str, Vector]:
    """MiniLM vectors of the generated texts, each text embedded once per run."""
    unique = list(dict.fromkeys(texts))
    vectors = embedder.embed(unique)
    return {t: vectors[i] for i, t in enumerate(unique)}


def as_bound(kind: str) -> BoundKind | None:
    """The kind as a bound's, or None for a policy (or the oracle)."""
    for bound in BOUND_KINDS:
        if kind == bound:
            return bound
    return None


def _make_policy(
    kind: PolicyKind, memory: Any, settings: Settings, credit: str, seed: int
) -> CasePolicy | None:
    if kind == "oracle" or kind in BOUND_KINDS:
        return None
    if kind == "similarity":
        from memory_agent.policies.similarity import SimilarityPolicy

        return SimilarityPolicy()
    if kind == "value":
        from memory_agent.policies.value import ValuePolicy

        return ValuePolicy(
            memory, settings, credit="flat" if credit == "flat" else "cited", seed=seed
        )
    if kind == "track":
        from memory_agent.policies.track import TrackPolicy

        return TrackPolicy(
            memory, settings, credit="flat" if credit == "flat" else "cited", seed=seed
        )
    from memory_agent.policies.neural import NeuralPolicy

    return NeuralPolicy(
        memory, settings, credit="flat" if credit == "flat" else "cited", seed=seed,
        case_embedding=kind != "neural-no-emb",
    )  # fmt: skip


def run_policy(
    kind: PolicyKind,
    credit: str,
    stream: Stream,
    vectors: dict[str, Vector],
    settings: Settings,
    seed: int,
    *,
    k: int = 3,
    on_episode: Callable[[], None] | None = None,
    bound: BoundSettings | None = None,
) -> RunResult:
    """One policy over the whole stream, on a fresh store in a temporary directory.

    A bound kind gets `bound` settings (default: `BoundSettings()`) and, per episode, the
    hidden family of the task (and for `bound`, of every case) beside the shortlist.
    """
    from memory_agent.policies.base import Feedback
    from memory_agent.store import CaseMemory, NewCase

    result = RunResult(kind, credit, seed, [], [])
    with tempfile.TemporaryDirectory(prefix="policy-bench-") as tmp:
        run_settings = settings.replace(home=Path(tmp))
        memory = CaseMemory(run_settings, database_url=f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            policy = _make_policy(kind, memory, run_settings, credit, seed)
            bound_kind = as_bound(kind)
            told = None if bound_kind is None else FamilyBound(bound_kind, seed, bound)
            cases: dict[int, SimCase] = {}
            case_family: dict[int, int] = {}  # hidden; only a bound told case families sees it
            for episode in range(stream.episodes):
                arriving = stream.arrivals.get(episode, [])
                if arriving:
                    ids = memory.add_many(
                        [
                            NewCase(task=c.text, reward=c.stored_reward, source="sim")
                            for c in arriving
                        ],
                        namespace=NAMESPACE,
                        embeddings=np.stack([vectors[c.text] for c in arriving]),
                    )
                    cases.update(zip(ids, arriving, strict=True))
                    case_family.update((i, c.family) for i, c in zip(ids, arriving, strict=True))
                family, text = stream.tasks[episode]
                state = vectors[text]
                candidates = memory.candidates(
                    state, namespace=NAMESPACE, size=run_settings.store.shortlist_size
                )
                utility = {
                    c.case_id: cases[c.case_id].utility_at(family, episode) for c in candidates
                }
                best = sorted(utility.values(), reverse=True)[:k]
                if told is not None:
                    started = time.perf_counter()
                    chosen = told.select(
                        candidates,
                        k,
                        task_family=family,
                        case_family=case_family if told.knows_case_family else None,
                    )
                    result.select_ms.append((time.perf_counter() - started) * 1000)
                elif policy is None:
                    chosen = sorted(utility, key=lambda i: -utility[i])[:k]
                else:
                    started = time.perf_counter()
                    chosen = policy.select(state, candidates, k, STAGE).case_ids
                    result.select_ms.append((time.perf_counter() - started) * 1000)
                utilities = [utility[i] for i in chosen]
                draws = stream.use_draws[episode]
                used = [bool(draws[j] < use_probability(u)) for j, u in enumerate(utilities)]
                reward = realised_reward(utilities, used, float(stream.noise[episode]))
                result.rewards.append(reward)
                result.regrets.append(expected_reward(best) - expected_reward(utilities))
                result.shown_families.append([cases[i].family for i in chosen])
                feedback = Feedback(
                    namespace=NAMESPACE,
                    stage=STAGE,
                    state=state,
                    shown=chosen,
                    used=[i for i, flag in zip(chosen, used, strict=True) if flag],
                    reward=reward,
                )
                if told is not None:
                    started = time.perf_counter()
                    told.update(feedback, task_family=family)
                    result.update_ms.append((time.perf_counter() - started) * 1000)
                elif policy is not None:
                    started = time.perf_counter()
                    policy.update(feedback)
                    result.update_ms.append((time.perf_counter() - started) * 1000)
                if on_episode is not None:
                    on_episode()
        finally:
            memory.close()
    return result


def plan_runs(policies: Sequence[PolicyKind]) -> list[tuple[PolicyKind, str]]:
    """(policy, credit) pairs: learners both ways; the others with cited credit only."""
    runs: list[tuple[PolicyKind, str]] = []
    for kind in policies:
        if kind in LEARNERS:
            runs += [(kind, "cited"), (kind, "flat")]
        else:
            runs.append((kind, "cited"))
    return runs


def _mean_spread(values: Sequence[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    spread = float(statistics.stdev(values)) if len(values) > 1 else 0.0
    return mean, spread


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def interval(values: Sequence[float]) -> list[float] | None:
    """95% Student t interval of the mean over seeds (None for fewer than two)."""
    if len(values) < 2:
        return None
    mean, spread = _mean_spread(values)
    t = _T95[len(values) - 2] if len(values) - 2 < len(_T95) else 1.96
    half = t * spread / len(values) ** 0.5
    return [round(mean - half, 4), round(mean + half, 4)]


def paired(a: Sequence[RunResult], b: Sequence[RunResult]) -> dict[str, Any] | None:
    """Mean over seeds of a's final reward minus b's on the same seed, with its interval."""
    theirs = {r.seed: r.final_reward for r in b}
    diffs = [r.final_reward - theirs[r.seed] for r in a if r.seed in theirs]
    if not diffs:
        return None
    return {"mean": round(float(np.mean(diffs)), 4), "ci95": interval(diffs),
            "per_seed": [round(d, 4) for d in diffs]}  # fmt: skip


def summarise(results: Sequence[RunResult], episodes: int, seeds: Sequence[int]) -> dict[str, Any]:
    """The benchmark's figures: per policy (cited credit) with its flat-credit twin."""
    by: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        by.setdefault((r.policy, r.credit), []).append(r)
    oracle = {r.seed: r.final_reward for r in by.get(("oracle", "cited"), [])}
    oracle_mean = float(np.mean(list(oracle.values()))) if oracle else float("nan")

    def ratio(run: RunResult) -> float | None:
        best = oracle.get(run.seed)
        return round(run.final_reward / best, 4) if best is not None and best > 0 else None

    def figures(runs: list[RunResult]) -> dict[str, Any]:
        final, final_spread = _mean_spread([r.final_reward for r in runs])
        regret, regret_spread = _mean_spread([r.regret for r in runs])
        ratios = [x for x in map(ratio, runs) if x is not None]
        out: dict[str, Any] = {
            "final_reward": round(final, 4),
            "final_reward_spread": round(final_spread, 4),
            "regret": round(regret, 2),
            "regret_spread": round(regret_spread, 2),
            "vs_oracle": round(final / oracle_mean, 4) if oracle_mean > 0 else None,
            "vs_oracle_min": round(min(ratios), 4) if ratios else None,
            "vs_oracle_spread": round(_mean_spread(ratios)[1], 4) if ratios else None,
            # 95% interval over seeds of the per-seed ratio to the oracle.
            "vs_oracle_ci95": interval(ratios),
            # Per seed, so a claim about held-out seeds can be checked from this output alone.
            "per_seed": [
                {
                    "seed": r.seed,
                    "final_reward": round(r.final_reward, 4),
                    "vs_oracle": ratio(r),
                    "regret": round(r.regret, 2),
                }
                for r in runs
            ],
        }
        select = [x for r in runs for x in r.select_ms]
        update = [x for r in runs for x in r.update_ms]
        if select:
            out["select_ms"] = {"median": round(_percentile(select, 50), 3),
                                "p95": round(_percentile(select, 95), 3)}  # fmt: skip
        if update:
            out["update_ms"] = {"median": round(_percentile(update, 50), 3),
                                "p95": round(_percentile(update, 95), 3)}  # fmt: skip
        return out

    policies: dict[str, Any] = {}
    for kind in ALL_KINDS:
        runs = by.get((kind, "cited"))
        if not runs:
            continue
        policies[kind] = figures(runs)
        bound_kind = as_bound(kind)
        if bound_kind is not None:
            policies[kind]["told"] = TOLD[bound_kind]
        if kind not in ("similarity", "oracle") and by.get(("similarity", "cited")):
            policies[kind]["minus_similarity"] = paired(runs, by[("similarity", "cited")])
        if by.get((kind, "flat")):
            policies[kind]["flat"] = figures(by[(kind, "flat")])
            policies[kind]["cited_minus_flat"] = paired(runs, by[(kind, "flat")])
    return {"episodes": episodes, "seeds": list(seeds), "policies": policies}


def curves(results: Sequence[RunResult], window: int = 25) -> dict[str, np.ndarray]:
    """Moving-average reward per episode, averaged over seeds, per policy/credit."""
    out: dict[str, np.ndarray] = {}
    groups: dict[str, list[np.ndarray]] = {}
    for r in results:
        if r.policy in BOUND_KINDS:
            label = f"{r.policy} (told families)"
        elif r.policy in ("similarity", "oracle"):
            label = r.policy
        else:
            label = f"{r.policy} ({r.credit})"
        groups.setdefault(label, []).append(np.asarray(r.rewards))
    kernel = np.ones(window) / window
    for label, series in groups.items():
        mean = np.mean(np.stack(series), axis=0)
        out[label] = np.convolve(mean, kernel, mode="valid")
    return out


def plot_curves(results: Sequence[RunResult], path: Path, title: str) -> Path:
    with eval_extra("Plotting the policy learning curves"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, values in curves(results).items():
        style = "--" if "flat" in label else "-"
        ax.plot(np.arange(len(values)) + 25, values, style, label=label, linewidth=1.4)
    ax.set_xlabel("episode")
    ax.set_ylabel("reward (moving average, 25 episodes)")
    ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_benchmark(
    embedder: Embedder,
    settings: Settings,
    *,
    episodes: int,
    seeds: Sequence[int],
    policies: Sequence[PolicyKind] = KINDS,
    k: int = 3,
    on_episode: Callable[[], None] | None = None,
    bound: BoundSettings | None = None,
) -> tuple[dict[str, Any], list[RunResult]]:
    """Every (policy, credit) pair on the stream of every seed (`bound`: the bounds' settings)."""
    streams = {seed: make_stream(episodes, seed, k) for seed in seeds}
    vectors = embed_texts(embedder, [t for s in streams.values() for t in s.texts])
    results = []
    for seed in seeds:
        for kind, credit in plan_runs(policies):
            results.append(
                run_policy(
                    kind,
                    credit,
                    streams[seed],
                    vectors,
                    settings,
                    seed,
                    k=k,
                    on_episode=on_episode,
                    bound=bound,
                )  # fmt: skip
            )
    summary = summarise(results, episodes, seeds)
    if any(kind in BOUND_KINDS for kind in policies):
        summary["bound_settings"] = asdict(bound or BoundSettings())
    return summary, results
