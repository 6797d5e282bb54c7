"""`memory-agent serve` started for a test: a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

import memory_agent

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, **settings: str) -> dict[str, str]:
    """This checkout's code and the tests folder (the hash embedder) on the path, the data
    in `home`, offline, and `settings` as MEMORY_AGENT_* variables."""
    source = str(Path(memory_agent.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_AGENT_")}
    env.update({
        "MEMORY_AGENT_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([source, str(TESTS)]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MEMORY_AGENT_SERVE_SERVICE_FACTORY": "hash_service:make",
    })  # fmt: skip
    env.update({f"MEMORY_AGENT_{k.upper()}": v for k, v in settings.items()})
    return env


@contextmanager
def serving(home: Path, *args: str, **settings: str) -> Iterator[str]:
    """Runs `memory-agent serve --port <free> *args` until the block ends; yields its URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(home / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "memory_agent", "serve", "--port", str(port), *args],
        env=server_env(home, **settings), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {(home / f'server-{port}.log').read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
