"""Embedders: the real MiniLM offline, and an OpenAI-compatible endpoint on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory_agent.errors import EmbedderError
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, OpenAIEmbedder, SentenceTransformerEmbedder
from memory_agent.store.embedder import embedder_from_settings


def test_minilm_gives_unit_vectors_that_capture_meaning(
    minilm: SentenceTransformerEmbedder,
) -> None:
    vectors = minilm.embed(
        ["How many bits are set in 37?", "Count the 1 bits of the number 37.", "Bake a cake."]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert minilm.embed([]).shape == (0, 384)


def test_a_bad_model_path_says_what_to_set(tmp_path: Path) -> None:
    embedder = SentenceTransformerEmbedder(str(tmp_path / "no-model-here"))
    with pytest.raises(EmbedderError, match="MEMORY_AGENT_EMBEDDER_MODEL"):
        embedder.embed(["x"])


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    """A minimal `/v1/embeddings`: deterministic vectors from the text's bytes."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if body["model"] == "missing":
            self._reply(404, {"error": {"message": "model not found", "type": "invalid_request"}})
            return
        data = []
        for index, text in enumerate(body["input"]):
            rng = np.random.default_rng(sum(text.encode()))
            data.append({"object": "embedding", "index": index,
                         "embedding": rng.normal(size=16).tolist()})  # fmt: skip
        data.reverse()  # the client must order by index, not by position
        self._reply(200, {"object": "list", "data": data, "model": body["model"],
                          "usage": {"prompt_tokens": 1, "total_tokens": 1}})  # fmt: skip

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_openai_compatible_embedder_backs_a_store(embeddings_server: str, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        store={
            "embedder": "openai",
            "embedder_model": "tiny",
            "embedder_base_url": embeddings_server,
        },
    )
    embedder = embedder_from_settings(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    with CaseMemory(settings, embedder=embedder) as memory:
        first = memory.add("alpha")
        memory.add("beta")
        hit = memory.search("alpha", k=1)[0]
        assert hit.case.id == first.id and hit.score == pytest.approx(1.0, abs=1e-5)
        assert memory.stats()["embedder"] == "openai:tiny" and memory.dim == 16


def test_openai_endpoint_errors_are_explained(embeddings_server: str) -> None:
    embedder = OpenAIEmbedder("missing", base_url=embeddings_server)
    with pytest.raises(EmbedderError, match="MEMORY_AGENT_EMBEDDER_BASE_URL"):
        embedder.embed(["x"])
