"""The float16 re-rank copies' disk budget: exact scores while the copies fit, codes alone
once the store outgrows it, with the copies dropped for every process and the file compacted.

Small budgets over the hash embedder's 32-d vectors and small codebooks (4-byte codes over
16 learned dimensions) keep training to a second or two; the copies cost 64 bytes a case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from compressed_store import compressed_settings
from hash_embedder import HashEmbedder
from sqlalchemy import create_engine, func, select

from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase
from memory_agent.store.models import CaseRow, StoreMetaRow

DIM = HashEmbedder.dim
COPY = DIM * 2  # bytes of one float16 copy
BUDGET_CASES = 1500


def budget_knobs(budget_cases: int = BUDGET_CASES) -> dict[str, Any]:
    """Store knobs: switch at 1,000 cases, copies while `budget_cases` of them fit."""
    return {
        "code_bytes": 4,
        "codebook_dim": 16,
        "codebook_upkeep": False,  # no retrain in between: the copies are what is tested
        "rerank_disk_budget_mb": budget_cases * COPY / 2**20,
    }


def open_store(home: Path, url: str, **more: Any) -> CaseMemory:
    settings = compressed_settings(home, **{**budget_knobs(), **more})
    return CaseMemory(settings, embedder=HashEmbedder(), database_url=url)  # type: ignore[arg-type]


def add_tasks(memory: CaseMemory, start: int, count: int) -> list[int]:
    return memory.add_many([NewCase(task=f"task {i}") for i in range(start, start + count)])


def copies_in_database(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.scalar(
            select(func.count()).select_from(CaseRow).where(CaseRow.rerank_vector.is_not(None))
        )
    engine.dispose()
    return int(found or 0)


def score_errors(memory: CaseMemory, query: str) -> tuple[list[str], np.ndarray]:
    """The tasks `search(query)` returns and how far each score is from the exact cosine."""
    embedder = HashEmbedder()
    hits = memory.search(query, 5)
    exact = embedder.embed([h.case.task for h in hits]) @ embedder.embed([query])[0]
    errors = np.abs(np.asarray([h.score for h in hits]) - exact)
    return [h.case.task for h in hits], errors


def test_copies_rerank_below_the_budget_and_are_dropped_past_it(
    database_url: str, isolated_home: Path
) -> None:
    memory = open_store(isolated_home, database_url)
    add_tasks(memory, 0, 1200)  # switches to codes at 1,000; 1,200 copies fit 1,500
    stats = memory.stats()
    assert stats["index_kind"] == "opq-ivf-pq"
    assert stats["rerank_mode"] == "float16" and stats["rerank"] is True
    assert stats["rerank_copies_dropped"] is False
    assert stats["rerank_copy_bytes"] == 1200 * COPY
    fixed = stats["codebook_disk_bytes"] + stats["reservoir_bytes"]
    assert stats["disk_bytes_per_case"] == pytest.approx(stats["code_bytes"] + COPY + fixed / 1200)
    before = stats
    tasks, errors = score_errors(memory, "task 7")
    # Re-ranked by the float16 copies: exact cosines (to float16 precision).
    assert tasks[0] == "task 7" and errors.max() < 2e-3

    add_tasks(memory, 1200, 400)  # 1,600 copies would not fit: they go
    stats = memory.stats()
    assert stats["rerank_mode"] == "codes" and stats["rerank"] is False
    assert stats["rerank_copies_dropped"] is True
    assert stats["rerank_copy_bytes"] == 0 and copies_in_database(database_url) == 0
    fixed = stats["codebook_disk_bytes"] + stats["reservoir_bytes"]
    assert stats["disk_bytes_per_case"] == pytest.approx(stats["code_bytes"] + fixed / 1600)
    assert stats["disk_bytes_per_case"] < before["disk_bytes_per_case"] - COPY + 1
    if before["database_file_bytes_per_case"] is not None:  # SQLite: the file was compacted
        assert stats["database_file_bytes_per_case"] < before["database_file_bytes_per_case"] - 40
    # Searches go on, ranked by the codes alone: approximate scores now.
    tasks, errors = score_errors(memory, "task 7")
    assert len(tasks) == 5 and errors.max() > 5e-3
    ids = memory.add_many([NewCase(task="after the drop")])
    assert copies_in_database(database_url) == 0  # no copy is written any more
    assert ids[0] in memory.nearest(HashEmbedder().embed(["after the drop"]), 50)[1]
    memory.close()

    reopened = open_store(isolated_home, database_url)
    try:
        assert reopened.stats()["rerank_mode"] == "codes"
        assert ids[0] in reopened.nearest(HashEmbedder().embed(["after the drop"]), 50)[1]
        reopened.add_many([NewCase(task="after the reopen")])
        assert copies_in_database(database_url) == 0
    finally:
        reopened.close()


def test_a_store_past_the_budget_at_the_switch_never_writes_copies(
    tmp_path: Path, isolated_home: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    memory = open_store(isolated_home, url, rerank_disk_budget_mb=900 * COPY / 2**20)
    try:
        add_tasks(memory, 0, 1000)  # the switch itself is past 900 cases' copies
        stats = memory.stats()
        assert stats["index_kind"] == "opq-ivf-pq" and stats["rerank_mode"] == "codes"
        assert stats["rerank_copies_dropped"] is True and copies_in_database(url) == 0
        assert len(memory.search("task 3", 5)) == 5
    finally:
        memory.close()


def test_other_processes_notice_the_copies_are_gone(database_url: str, isolated_home: Path) -> None:
    """A process that has not looked since the drop still searches; its next write finds
    out before it commits (and stores no copy), and a sync finds out too."""
    dropper = open_store(isolated_home, database_url)
    add_tasks(dropper, 0, 1200)
    # Neither looks at the database on its own before a search (a long sync interval).
    writer = open_store(isolated_home, database_url, index_sync_interval=3600)
    reader = open_store(isolated_home, database_url, index_sync_interval=3600)
    try:
        for other in (writer, reader):
            assert other._compression.reranks
            assert score_errors(other, "task 9")[1].max() < 2e-3
        add_tasks(dropper, 1200, 400)
        assert dropper.stats()["rerank_mode"] == "codes"
        for other in (writer, reader):  # not noticed yet: still searching, without copies
            assert other._compression.reranks
            assert len(other.search("task 9", 5)) == 5
        new = add_tasks(writer, 5000, 3)  # encoded with copies, refused, written without
        assert copies_in_database(database_url) == 0
        assert not writer._compression.reranks
        assert writer.stats()["rerank_mode"] == "codes"
        reader.sync(force=True)
        assert not reader._compression.reranks
        found = reader.nearest(HashEmbedder().embed([f"task {i}" for i in range(5000, 5003)]), 50)
        assert all(case_id in row for case_id, row in zip(new, found[1], strict=True))
    finally:
        reader.close()
        writer.close()
        dropper.close()


_KILLED_DROP = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from hash_embedder import HashEmbedder
import memory_agent.store.rerank as rerank
import memory_agent.store.upkeep as upkeep
from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase

def die(*_args):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[3] == "in_transaction":
    # After the copies are NULLed and the record written, before the commit.
    mark = rerank.mark_dropped
    rerank.mark_dropped = lambda *args: (mark(*args), die())
else:
    upkeep.compact = die  # after the commit, before the file is compacted
settings = Settings(**json.loads(sys.argv[4]))
memory = CaseMemory(settings, embedder=HashEmbedder(), database_url=sys.argv[2])
memory.add_many([NewCase(task=f"task {i}") for i in range(1200, 1600)])
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["in_transaction", "before_compact"])
def test_a_drop_killed_midway_leaves_a_store_that_works(
    point: str, tmp_path: Path, isolated_home: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    memory = open_store(isolated_home, url)
    add_tasks(memory, 0, 1200)
    memory.close()
    settings = compressed_settings(isolated_home, **budget_knobs())
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_DROP, str(Path(__file__).parent), url, point,
         json.dumps({"home": str(isolated_home), "store": settings.store.model_dump()})],
        env=os.environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr

    reopened = open_store(isolated_home, url)
    try:
        stats = reopened.stats()
        assert stats["cases"] == 1600  # the adds committed before the drop began
        if point == "in_transaction":
            # Rolled back whole: every copy is there, nothing says they went; exact scores.
            assert copies_in_database(url) == 1600 and not stats["rerank_copies_dropped"]
            assert stats["rerank_mode"] == "float16"
            assert score_errors(reopened, "task 1300")[1].max() < 2e-3
            add_tasks(reopened, 1600, 1)  # the next write finishes the job
        stats = reopened.stats()
        assert stats["rerank_mode"] == "codes" and copies_in_database(url) == 0
        assert _dropped_record(url)["cases"] >= 1600
        assert "task 1300" in [h.case.task for h in reopened.search("task 1300", 50)]
    finally:
        reopened.close()


def _dropped_record(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.scalar(select(StoreMetaRow.value).where(StoreMetaRow.key == "rerank_copies"))
    engine.dispose()
    assert isinstance(value, dict)
    return value


def test_the_budget_setting_reads_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMORY_AGENT_RERANK_DISK_BUDGET_MB", "12.5")
    assert Settings().store.rerank_disk_budget_mb == 12.5
    assert Settings(store={"rerank_disk_budget_mb": 0}).store.rerank_disk_budget_mb == 0


def crowded_pairs(pairs: int, crowd: int, dim: int = 128) -> tuple[np.ndarray, list[int]]:
    """`pairs` groups of unit vectors: two at cosine 0.97 (duplicates at 0.95) and a crowd of
    `crowd` at 0.935 from both (not duplicates of them, and under 0.95 among themselves: at
    128-d random directions stay far enough apart). Returns the vectors and the position of
    each pair's first member (the second follows it)."""
    rng = np.random.default_rng(0)
    out, firsts = [], []
    b = np.sqrt(1 / 0.97 - 1)  # p + b v1, p + b v2 (p, v1, v2 orthonormal): cosine 0.97
    d = np.sqrt(1 / (0.935**2 * (1 + b * b)) - 1)  # p + d w, w orthogonal to all three
    for _ in range(pairs):
        basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].T  # orthonormal rows
        p, v1, v2, rest = basis[0], basis[1], basis[2], basis[3:]
        firsts.append(len(out))
        out += [p + b * v1, p + b * v2]
        for _ in range(crowd):
            w = rng.standard_normal(len(rest)) @ rest
            out.append(p + d * w / np.linalg.norm(w))
    vectors = np.asarray(out, np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), firsts


def test_find_duplicates_ranks_candidates_by_the_copies(
    tmp_path: Path, isolated_home: Path
) -> None:
    """In a crowd of near misses (0.935), codes too coarse to tell them apart (2 bytes) do not
    always rank a case's one duplicate (0.97) among its 32 nearest; re-ranked by the float16
    copies it comes first: every pair is found, and nothing else."""
    vectors, firsts = crowded_pairs(pairs=10, crowd=100)
    unit = vectors @ vectors.T
    np.fill_diagonal(unit, 0)
    assert sorted(zip(*np.nonzero(np.triu(unit) >= 0.95), strict=True)) == [
        (f, f + 1) for f in firsts
    ]  # the data: exactly the pairs are duplicates
    url = f"sqlite:///{tmp_path / 'dupes.db'}"
    memory = open_store(isolated_home, url, rerank_disk_budget_mb=10, code_bytes=2)
    try:
        ids = memory.add_many(
            [NewCase(task=f"case {i}") for i in range(len(vectors))], embeddings=vectors
        )
        assert memory.stats()["rerank_mode"] == "float16"
        pairs = sorted([ids[f], ids[f + 1]] for f in firsts)
        assert memory.find_duplicates(threshold=0.95) == pairs
    finally:
        memory.close()
