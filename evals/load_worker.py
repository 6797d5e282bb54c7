"""One worker process of `memory-agent bench load`: a mix of store operations, journaled.

The benchmark starts several of these on one store and SIGKILLs them at random moments. So
the checker can tell what the store must hold afterwards, each worker appends to its own
journal, one JSON line per event, written with a single `os.write` on an O_APPEND file
descriptor: once the call returns the line is in the kernel's page cache, which a SIGKILL
of the worker cannot undo. An operation is journaled twice, `begin` before the store is
called and `ack` (or `err`) after it returned; a `begin` without its `ack` is the operation
a kill interrupted, which the store may have applied or not, but never half.

A restarted worker reads its own journal back: how many operations it has done, which of its
cases are live (it deletes only its own cases, so no other process can take them away), and
how many times it has started (a new generation gets new task texts, so every add is unique).

Run as `python -m memory_agent.evals.load_worker SPEC.json WORKER`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# The operation mix: what an agent fleet does to a shared memory (searching and writing
# cases, feedback on the cases it was shown, now and then a delete or a re-import).
OPS = ("add", "search", "outcome", "delete", "import")
WEIGHTS = (0.35, 0.35, 0.15, 0.10, 0.05)
NAMESPACES = ("team-a", "team-b")
SHARED = "shared"  # the imported cases; never deleted, so every worker may rate them
STAGE = "plan"
DIM = 384  # MiniLM's size, so the store's default codebook shape applies unchanged


class HashEmbedder:
    """A deterministic embedder from a hash of the text. The load benchmark measures the
    store under many processes, not a model: with MiniLM on a 2-core machine eight workers
    would spend their time embedding and the store would hardly be exercised."""

    name = "load-hash-384"
    dim = DIM

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            out[row] = np.random.default_rng(seed).standard_normal(DIM, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True).astype(np.float32)
        return np.asarray(out / norms, dtype=np.float32)


def import_lines(count: int) -> list[dict[str, Any]]:
    """The shared import file's cases (the same file every worker imports)."""
    return [
        {"task": f"shared case {i}: how to handle request {i}", "plan": f"plan {i}"}
        for i in range(count)
    ]


@dataclass
class Resume:
    """What a (re)started worker learns from its journal."""

    generation: int = 0
    done: int = 0
    live: dict[int, str] = field(default_factory=dict)  # own live case id -> namespace
    # Namespaces this worker has seen exist (searching one nobody wrote to yet is an error).
    known: set[str] = field(default_factory=set)


def read_journal(path: Path) -> Resume:
    resume = Resume()
    if not path.exists():
        return resume
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        kind = event["t"]
        if kind == "start":
            resume.generation += 1
        elif kind in ("ack", "err"):
            resume.done += 1
            if kind == "ack" and event["op"] in ("add", "import"):
                resume.known.add(event["ns"])
            if kind == "ack" and event["op"] == "add":
                resume.live[event["ids"][0]] = event["ns"]
            elif kind == "ack" and event["op"] == "delete":
                resume.live.pop(event["ids"][0], None)
    return resume


class Journal:
    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, **event: Any) -> None:
        # One write call per line: a kill lands before or after it, never inside.
        os.write(self._fd, (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8"))


def run(spec: dict[str, Any], worker: int) -> None:
    from memory_agent.errors import MemoryAgentError
    from memory_agent.settings import Settings
    from memory_agent.store import CaseMemory

    folder = Path(spec["folder"])
    path = folder / f"journal-{worker}.jsonl"
    resume = read_journal(path)
    journal = Journal(path)
    gen = resume.generation
    journal.write(t="start", gen=gen, pid=os.getpid(), wall=time.time())
    rng = random.Random(spec["seed"] * 1_000_003 + worker * 1009 + gen)
    started = time.perf_counter()
    memory = CaseMemory(
        Settings(home=spec["home"]), embedder=HashEmbedder(), database_url=spec["url"]
    )
    journal.write(t="open", ms=(time.perf_counter() - started) * 1000)
    live, known = resume.live, resume.known
    import_file = Path(spec["import_file"])
    for seq in range(resume.done, spec["ops"]):
        # Every worker's first operation is the import: all of them import the same file at
        # once, the race the content-hash rule must win.
        # (Until it has imported, a worker cannot rate shared cases: it imports again.)
        op = "import" if SHARED not in known else rng.choices(OPS, WEIGHTS)[0]
        if op == "delete" and not live:
            op = "add"
        args: dict[str, Any] = {}
        if op == "add":
            args = {"ns": rng.choice(NAMESPACES), "task": f"w{worker} g{gen} op{seq}: task text"}
        elif op == "search":
            args = {"ns": rng.choice(sorted(known)), "q": f"request {rng.randrange(999)}"}
        elif op == "outcome":
            args = {"q": f"shared case {rng.randrange(spec['import_cases'])}",
                    "reward": rng.choice((0.0, 0.5, 1.0))}  # fmt: skip
        elif op == "delete":
            case_id = rng.choice(sorted(live))
            args = {"ns": live[case_id], "id": case_id}
        journal.write(t="begin", seq=seq, op=op, **args)
        t0 = time.perf_counter()
        try:
            ids = _apply(memory, op, args, import_file)
        except MemoryAgentError as exc:
            journal.write(t="err", seq=seq, op=op, kind=type(exc).__name__, msg=str(exc)[:500],
                          clear=True)  # fmt: skip
            continue
        except Exception as exc:  # noqa: BLE001 - an error the store let through: count it
            journal.write(t="err", seq=seq, op=op, kind=type(exc).__name__, msg=str(exc)[:500],
                          clear=False)  # fmt: skip
            continue
        ms = (time.perf_counter() - t0) * 1000
        journal.write(t="ack", seq=seq, op=op, ms=ms, wall=time.time(), ids=ids,
                      ns=args.get("ns", SHARED))  # fmt: skip
        if op in ("add", "import"):
            known.add(args.get("ns", SHARED))
        if op == "add":
            live[ids[0]] = args["ns"]
        elif op == "delete":
            live.pop(args["id"], None)
    journal.write(t="done")
    _final_check(memory, spec, journal)
    memory.close()


def _apply(memory: Any, op: str, args: dict[str, Any], import_file: Path) -> list[int]:
    """Run one operation; returns the case ids it touched (for the journal)."""
    if op == "add":
        return [int(memory.add(args["task"], plan="a plan", namespace=args["ns"]).id)]
    if op == "search":
        return [int(h.case.id) for h in memory.search(args["q"], 5, namespace=args["ns"])]
    if op == "outcome":
        # Feedback on the cases a search showed, as a policy gives it: every worker rates the
        # same shared cases, so updates of one case race across processes.
        hits = memory.search(args["q"], 2, namespace=SHARED)
        ids = sorted({int(h.case.id) for h in hits})
        if ids:
            memory.case_stats.apply(SHARED, STAGE, dict.fromkeys(ids, args["reward"]), None)
        return ids
    if op == "delete":
        memory.delete(args["id"], namespace=args["ns"])
        return [args["id"]]
    report = memory.import_file(import_file, namespace=SHARED)
    return [int(report.added), int(report.skipped_duplicates)]


def _final_check(memory: Any, spec: dict[str, Any], journal: Journal) -> None:
    """Once every worker is done (the benchmark then touches the `check` file), bring this
    process's long-lived indexes up to date and compare them with the database."""
    go = Path(spec["folder"]) / "check"
    deadline = time.monotonic() + spec.get("check_wait", 600)
    while not go.exists():
        if time.monotonic() > deadline:
            journal.write(t="check", skipped=True)
            return
        time.sleep(0.05)
    t0 = time.perf_counter()
    memory.sync(force=True)
    journal.write(t="check", ms=(time.perf_counter() - t0) * 1000, **index_vs_database(memory))


def index_vs_database(memory: Any) -> dict[str, Any]:
    """Each namespace's in-memory index against the live cases the database holds: the ids
    the index lacks and the ids it holds that are not live (both must be empty)."""
    from sqlalchemy import select

    from memory_agent.store.models import CaseRow

    with memory.engine.connect() as conn:
        rows = conn.execute(
            select(CaseRow.namespace, CaseRow.id).where(CaseRow.deleted_at.is_(None))
        ).all()
    live: dict[str, set[int]] = {}
    for ns, case_id in rows:
        live.setdefault(ns, set()).add(int(case_id))
    missing: dict[str, list[int]] = {}
    extra: dict[str, int] = {}
    for ns in sorted(set(live) | set(memory._indexes)):
        want = live.get(ns, set())
        index = memory._indexes.get(ns)
        held = 0 if index is None else len(index)
        found: set[int] = set()
        if index is not None and want:
            # A search restricted to the live ids returns every one of them the index holds
            # (a filtered search probes all coarse lists of a compressed index).
            allowed = np.asarray(sorted(want), dtype=np.int64)
            query = np.ones((1, index.dim), dtype=np.float32) / np.sqrt(index.dim)
            _scores, ids = index.search(query, len(allowed), allowed)
            found = {int(i) for i in ids[0] if i >= 0}
        if want - found:
            missing[ns] = sorted(want - found)[:20]
        if held - len(found):
            extra[ns] = held - len(found)
    return {"missing": missing, "extra": extra, "live": sum(len(v) for v in live.values())}


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")), int(sys.argv[2]))
