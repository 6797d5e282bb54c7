"""`memory-agent bench serve`: the HTTP API under concurrent clients, beside the embedder.

One run: (1) a store of `cases` cases, built once and reused (its folder is the cache; a run
cut short resumes where it stopped); (2) the embedder's own batch throughput on the query
texts, in this process before the server starts; (3) `memory-agent serve` in a subprocess
on loopback; (4) `clients` concurrent clients (asyncio + httpx, this process) sending
retrieves with the query text, retrieves with the query's vector (embedded here
beforehand, as a client with its own embedder would), then adds; requests/s and p50/p95
latency for each.

The stored cases' vectors are seeded clustered synthetic vectors in the embedder's space
(embedding 100k texts would take this CPU 20 minutes, and the cost of a search does not
depend on what the vectors mean); every query and every added task is real text embedded
by the real embedder inside the server, which is the cost being measured. The clients run
on the same machine as the server and take CPU from it; the figures include that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from memory_agent.settings import Settings

NAMESPACE = "bench"
_SUBJECTS = ["a Python list", "a CSV file", "a JSON document", "the sales table", "a PDF report",
             "the server logs", "a git branch", "a SQL query", "the photo archive",
             "a Docker image", "the invoice totals", "a web page", "the customer emails",
             "a time series", "a shell script", "the meeting notes"]  # fmt: skip
_VERBS = ["sort", "deduplicate", "summarise", "reverse", "count the words in", "merge",
          "validate", "compress", "translate", "plot", "search", "clean up", "split",
          "benchmark", "encrypt", "index"]  # fmt: skip
_ASPECTS = ["by date", "without loading it all into memory", "in one line", "for each user",
            "and keep the order", "on a busy server", "with error handling", "incrementally",
            "as fast as possible", "for a beginner", "with unit tests", "in parallel"]  # fmt: skip


def task_texts(n: int, seed: int) -> list[str]:
    """`n` varied task texts (seeded): the shape and length of real requests."""
    rng = random.Random(seed)
    return [f"How do I {rng.choice(_VERBS)} {rng.choice(_SUBJECTS)} {rng.choice(_ASPECTS)}? "
            f"(request {seed}-{i})" for i in range(n)]  # fmt: skip


def build_store(settings: Settings, cases: int, say: Callable[[str], None]) -> Settings:
    """Settings for a store of `cases` cases under HOME/bench/serve/store-<cases>, built
    here if it is not complete (a run cut short continues where it stopped)."""
    from memory_agent.evals.synthetic_vectors import SyntheticSpace
    from memory_agent.store import CaseMemory, NewCase
    from memory_agent.store.embedder import embedder_from_settings

    home = settings.home / "bench" / "serve" / f"store-{cases}"
    bench = settings.replace(home=home, database_url=None, namespace=NAMESPACE,
                             store={"reindex_in_background": False})  # fmt: skip
    embedder = embedder_from_settings(bench)
    with CaseMemory(bench, embedder=embedder) as memory:
        have = memory.count(NAMESPACE) if NAMESPACE in memory.namespaces() else 0
        if have < cases:
            say(f"Building the store: {have:,} of {cases:,} cases ({home})")
            space = SyntheticSpace(dim=embedder.dim)
            chunk = 10_000
            for start in range(have, cases, chunk):
                n = min(chunk, cases - start)
                texts = task_texts(n, seed=start)
                memory.add_many(
                    [NewCase(task=t, plan="step 1, step 2", answer="done", reward=1.0,
                             outcome="success", source="bench") for t in texts],
                    namespace=NAMESPACE, embeddings=space.sample(n, seed=start),
                )  # fmt: skip
                say(f"  {start + n:,} cases stored")
        if memory.reindex_remaining():
            memory.reindex()
        stats = memory.stats(NAMESPACE)
    say(f"Store ready: {stats.get('cases', cases):,} cases")
    return bench


def embedder_throughput(
    settings: Settings, texts: list[str], batch: int, clients: int
) -> dict[str, Any]:
    """Texts/s of the embedder alone: in batches of `batch` (the server's largest), of
    `clients` (the largest that as many closed-loop clients can queue), and one at a time."""
    from memory_agent.store.embedder import embedder_from_settings

    embedder = embedder_from_settings(settings)
    embedder.embed(texts[:batch])  # load and warm up

    def rate(size: int, sample: list[str]) -> float:
        started = time.perf_counter()
        for begin in range(0, len(sample), size):
            embedder.embed(sample[begin : begin + size])
        return len(sample) / (time.perf_counter() - started)

    batched = rate(batch, texts)
    at_clients = rate(min(clients, batch), texts[: max(len(texts) // 2, min(clients, batch))])
    single = rate(1, texts[:64])
    return {"model": embedder.name, "batch_size": batch, "texts": len(texts),
            "texts_per_s": round(batched, 1), "clients_batch_per_s": round(at_clients, 1),
            "one_at_a_time_per_s": round(single, 1), "torch_threads": _torch_threads()}  # fmt: skip


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    settings: Settings, workers: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """`memory-agent serve` on a free loopback port over the bench store; its URL once up."""
    import httpx

    port = _free_port()
    env = {**os.environ, "MEMORY_AGENT_HOME": str(settings.home), "MEMORY_AGENT_NAMESPACE":
           NAMESPACE, "MEMORY_AGENT_SERVE_WORKERS": str(workers)}  # fmt: skip
    env.pop("MEMORY_AGENT_DATABASE_URL", None)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "memory_agent", "serve", "--port", str(port)],
            env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"The server did not start in 300 s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


class _Connection:
    """One client: a keep-alive HTTP/1.1 connection sending one request at a time.

    A lean load generator on purpose: the clients share the machine with the server, and
    httpx's own work per request (1-3 ms of CPU on this 2-core machine) was taken from the
    server's cores. Requests are encoded before the clock starts; each response is read
    whole (uvicorn always sends Content-Length)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        if b"connection: close" in head.lower():
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def encode_post(url: str, path: str, body: dict[str, Any]) -> bytes:
    """The bytes of `POST path` with `body` as JSON, for `_Connection.post`."""
    data = json.dumps(body).encode()
    host = url.split("://", 1)[-1]
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def load(url: str, path: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Send `bodies` to `path` from `clients` concurrent clients, each waiting for its answer
    before it sends the next; the rate and latencies."""
    host, _, port = url.split("://", 1)[-1].partition(":")
    requests = [encode_post(url, path, body) for body in bodies]
    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(requests)

    async def client() -> None:
        connection = _Connection(host, int(port))
        try:
            for request in queue:
                started = time.perf_counter()
                status, body = await connection.post(request)
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    errors.append(f"{status} {body[:200].decode(errors='replace')}")
        finally:
            await connection.close()

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(bodies), "seconds": round(wall, 2),
        "per_s": round(len(bodies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": len(errors), "first_error": errors[0] if errors else None,
        "client_cpu_s": round(cpu, 2),
    }  # fmt: skip


def run_serve_benchmark(
    settings: Settings,
    *,
    cases: int,
    clients: int,
    requests: int,
    workers: int,
    folder: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    import platform

    bench = build_store(settings, cases, say)
    queries = task_texts(requests, seed=10_000_000)
    say("Embedder throughput (this process, before the server starts)")
    embedder = embedder_throughput(bench, queries[: min(len(queries), 1024)],
                                   bench.serve.embed_batch_size, clients)  # fmt: skip
    from memory_agent.store.embedder import embedder_from_settings

    vectors = embedder_from_settings(bench).embed(queries)  # the vector-giving clients' own
    process, url = start_server(bench, workers, folder / "server.log")
    try:
        say(f"Server up at {url} ({workers} worker(s)); warming up")
        asyncio.run(load(url, "/v1/retrieve", [{"task": q} for q in queries[:64]], clients))
        say(f"retrieve (text) x{requests}, {clients} clients")
        text = asyncio.run(load(url, "/v1/retrieve", [{"task": q} for q in queries], clients))
        say(f"retrieve (vector given) x{requests}")
        given = asyncio.run(load(url, "/v1/retrieve", [
            {"task": q, "vector": [round(float(x), 6) for x in v]}
            for q, v in zip(queries, vectors, strict=True)], clients))  # fmt: skip
        adds = min(requests, 2000)
        say(f"add x{adds}")
        added = asyncio.run(load(url, "/v1/cases", [
            {"task": t, "plan": "step 1", "answer": "done", "reward": 1.0}
            for t in task_texts(adds, seed=20_000_000 + int(time.time()))], clients))  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    ratio = text["per_s"] / embedder["texts_per_s"]
    return {
        "benchmark": "serve",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 1)},  # fmt: skip
        "cases": cases, "clients": clients, "workers": workers,
        "policy": bench.policy.name, "k": bench.policy.k,
        "embedder": embedder,
        "retrieve_text": text, "retrieve_vector": given, "add": added,
        "goals": {
            "retrieve_per_s_over_embedder_per_s": round(ratio, 3),
            "retrieve_text_goal_met": ratio >= 0.7 and text["p95_ms"] <= 20,
            "retrieve_vector_goal_met": given["per_s"] >= 2000,
        },
    }  # fmt: skip
