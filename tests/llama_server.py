"""llama-cpp-python's OpenAI-compatible server started for a test, on a free loopback port.

llama-cpp-python compiles for about 8 minutes, so it is no dependency: CI installs it
(`.ci/run`) and sets MEMORY_AGENT_TEST_REQUIRE_LLAMA_SERVER=1, which turns a missing package
into a failure; elsewhere the tests that need it skip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from http_server import free_port


def require_llama_cpp() -> ModuleType:
    """The `llama_cpp` module; skips the test where it is not installed (fails in CI)."""
    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("MEMORY_AGENT_TEST_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(
                "llama-cpp-python is required here (MEMORY_AGENT_TEST_REQUIRE_LLAMA_SERVER=1)"
            )
        pytest.skip(
            'llama-cpp-python is not installed (pip install "llama-cpp-python[server]"; '
            "CI sets MEMORY_AGENT_TEST_REQUIRE_LLAMA_SERVER=1)"
        )
    import llama_cpp

    return llama_cpp


@contextmanager
def llama_server(
    model: Path, log: Path, *options: str, n_ctx: int = 2048, threads: int = 2
) -> Iterator[str]:
    """Serve `model` (a GGUF) with `options` (server flags); yields the API's base URL
    (`http://127.0.0.1:PORT/v1`) once it answers, stops the server after. Its output goes to
    `log`: a file, since a full pipe would block the server's logging."""
    require_llama_cpp()
    port = free_port()
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
             "--n_threads", str(threads), *options],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
