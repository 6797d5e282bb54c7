"""The compressed vector memory: the switch to codes, reindexing, collapse and resumption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from compressed_store import add_synthetic, compressed_settings
from sqlalchemy import create_engine, func, select

from memory_agent.evals.codebook_collapse import collapse_curves
from memory_agent.evals.synthetic_vectors import SyntheticSpace, exact_top_k, recall
from memory_agent.store import CaseMemory
from memory_agent.store.models import CaseRow, CodebookRow

SPACE = SyntheticSpace()


def _rows(url: str) -> list[tuple[bytes | None, bytes | None, int | None]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(CaseRow.embedding, CaseRow.code, CaseRow.codebook_version).where(
                CaseRow.deleted_at.is_(None)
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_switch_to_codes_is_automatic_invisible_and_persisted(
    database_url: str, isolated_home: Path
) -> None:
    vectors = SPACE.sample(1000, seed=1)
    queries = SPACE.sample(40, seed=2)
    memory = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    ids = add_synthetic(memory, vectors[:500])
    before = memory.stats()
    assert before["codebook_version"] is None and before["index_kind"] == "flat"
    assert all(raw is not None and code is None for raw, code, _ in _rows(database_url))
    exact_hits = memory.nearest(queries, 10)[1]

    ids += add_synthetic(memory, vectors[500:], start=500)
    after = memory.stats()
    assert after["codebook_version"] == 1 and after["index_kind"] == "opq-ivf-pq"
    rows = _rows(database_url)
    assert len(rows) == 1000
    # Only codes (and float16 re-rank copies) are kept; the float32 vectors are gone.
    assert all(raw is None and code is not None and v == 1 for raw, code, v in rows)
    assert {len(code or b"") for _, code, _ in rows} == {after["code_bytes"]}
    assert after["vector_bytes_stored"] == 1000 * (after["code_bytes"] + 384 * 2)
    # In RAM only the codes and ids, beside the codebook copies and the reservoir.
    assert after["index_bytes"] == 1000 * (after["code_bytes"] - 1 + 8)

    position = {case_id: p for p, case_id in enumerate(ids)}
    as_positions = np.vectorize(lambda i: position.get(int(i), -1), otypes=[np.int64])
    truth = exact_top_k(queries, vectors, 10)
    _, found = memory.nearest(queries, 50)
    # The codes propose candidates and the float16 copies re-rank them: exact quality.
    assert recall(as_positions(found), truth) >= 0.95
    assert recall(as_positions(memory.nearest(queries, 10)[1]), truth) >= 0.95
    # The first 500 were searched exactly before the switch; their hits still come back.
    assert np.isin(exact_hits[:, 0], found).mean() >= 0.95
    unranked = CaseMemory(
        compressed_settings(isolated_home, rerank=False), database_url=database_url
    )
    # Without the re-rank the codes alone find less (what the re-rank is for).
    assert recall(as_positions(unranked.nearest(queries, 10)[1]), truth) < 0.9
    unranked.close()

    decoded = memory.vectors(ids[:50])
    cosine = np.sum(decoded * vectors[:50], axis=1) / np.linalg.norm(decoded, axis=1)
    assert cosine.min() > 0.999  # the float16 copy
    hits = memory.search(queries[0], 5)
    assert len(hits) == 5 and hits[0].case.codebook_version == 1
    memory.close()

    reopened = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    assert reopened.stats()["codebook_version"] == 1
    np.testing.assert_array_equal(reopened.nearest(queries, 50)[1], found)
    reopened.delete(ids[0])
    assert ids[0] not in reopened.nearest(vectors[:1], 50)[1]
    reopened.close()


def test_reindex_moves_every_case_to_a_new_version_while_search_serves(
    database_url: str, isolated_home: Path
) -> None:
    vectors = SPACE.sample(1000, seed=3)
    memory = CaseMemory(
        compressed_settings(isolated_home, reindex_batch_size=200), database_url=database_url
    )
    ids = add_synthetic(memory, vectors)
    assert memory.new_codebook("manual") == 2
    assert memory.stats()["reindex_remaining"] == 1000
    keeper = memory._compression
    assert keeper.reencode_batch(None) == 200
    # Mid-job: search still uses version 1 only, and new cases get both codes.
    assert memory.search(vectors[5], 1)[0].case.codebook_version == 1
    new_id = add_synthetic(memory, SPACE.sample(1, seed=4), start=1000)[0]
    assert memory.stats()["reindex_remaining"] == 800
    assert memory.reindex() is True
    stats = memory.stats()
    assert stats["codebook_version"] == 2 and stats["reindex_remaining"] == 0
    assert {v for _, _, v in _rows(database_url)} == {2}
    assert memory.search(vectors[5], 1)[0].case.id == ids[5]
    assert new_id in memory.nearest(memory.vectors([new_id]), 5)[1]
    memory.close()


def test_store_upkeep_brings_recall_back_after_a_shift() -> None:
    """The collapse stream through CaseMemory's public API: without upkeep the stale
    codebook's recall drops and stays down; with the store's automatic upkeep (distortion
    retrains, dead-codeword resets) it comes back to >= 90% of its value before the shift."""
    without, with_upkeep = collapse_curves(steps_before=2, steps=6, per_step=800, queries=60)
    shift = 2  # the first step after the distribution moves
    # Before the shift both stores are the same and recall is high.
    assert without.shortlist_recall[:shift] == with_upkeep.shortlist_recall[:shift]
    before = without.shortlist_recall[shift - 1]
    assert before > 0.8
    # Without upkeep: one codebook throughout, recall stays down.
    assert without.versions[-1] == 1
    assert max(without.shortlist_recall[shift:]) < before - 0.25
    # With upkeep: the store made new versions itself and recall is back.
    assert with_upkeep.versions[-1] > 1
    assert with_upkeep.shortlist_recall[-1] >= 0.9 * before
    assert min(with_upkeep.shortlist_recall[-2:]) > max(without.shortlist_recall[shift:]) + 0.2


@pytest.mark.slow
def test_killed_reindex_resumes_with_no_case_lost(tmp_path: Path, isolated_home: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    vectors = SPACE.sample(6000, seed=5)
    memory = CaseMemory(compressed_settings(isolated_home), database_url=url)
    ids = add_synthetic(memory, vectors)
    memory.delete(ids[0])
    memory.new_codebook("manual")
    memory.close()

    env = {
        **os.environ,
        "MEMORY_AGENT_DATABASE_URL": url,
        "MEMORY_AGENT_REINDEX_BATCH_SIZE": "10",
        "MEMORY_AGENT_CODEBOOK_MIN_CASES": "1000",
        "MEMORY_AGENT_EXACT_RAM_BUDGET_MB": "0",
    }
    command = [sys.executable, "-m", "memory_agent", "memory", "reindex"]
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = create_engine(url)
    done = 0
    deadline = time.monotonic() + 120
    while job.poll() is None and time.monotonic() < deadline:
        with engine.connect() as conn:
            done = int(
                conn.scalar(
                    select(func.count())
                    .select_from(CaseRow)
                    .where(CaseRow.next_codebook_version == 2)
                )
                or 0
            )
        if done >= 500:
            job.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    job.wait()
    assert job.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    assert 0 < done < 5999

    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    with engine.connect() as conn:
        live = conn.execute(
            select(CaseRow.id, CaseRow.code, CaseRow.codebook_version, CaseRow.next_code).where(
                CaseRow.deleted_at.is_(None)
            )
        ).all()
        active = (
            conn.execute(select(CodebookRow.version).where(CodebookRow.status == "active"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert active == [2]
    assert sorted(r[0] for r in live) == ids[1:]
    reopened = CaseMemory(compressed_settings(isolated_home), database_url=url)
    book = reopened._compression.active
    assert book is not None and book.version == 2
    codes = np.frombuffer(b"".join(r[1] for r in live), np.uint8).reshape(len(live), -1)
    book.check_codes(codes)  # every code decodes under version 2
    assert all(r[2] == 2 and r[3] is None for r in live)
    assert reopened.search(vectors[7], 1)[0].case.id == ids[7]
    reopened.close()


def test_a_grown_store_retrains_with_more_coarse_lists(tmp_path: Path, isolated_home: Path) -> None:
    url = f"sqlite:///{tmp_path / 'grow.db'}"
    vectors = SPACE.sample(9000, seed=6)
    memory = CaseMemory(compressed_settings(isolated_home), database_url=url)
    ids = add_synthetic(memory, vectors[:1000])
    first = memory._compression.active
    assert first is not None and first.trained_on == 1000
    add_synthetic(memory, vectors[1000:1900], start=1000)
    assert memory.stats()["pending_codebook_version"] is None  # 1.9x: not yet
    add_synthetic(memory, vectors[1900:], start=1900)
    assert memory.stats()["pending_codebook_version"] == 2  # 9x the cases: growth
    assert memory.reindex() is True
    grown = memory._compression.active
    assert grown is not None and grown.version == 2 and grown.trained_on == 9000
    assert grown.nlist > first.nlist
    assert memory.stats()["codebook_version"] == 2
    assert memory.search(vectors[10], 1)[0].case.id == ids[10]
    recent = memory._compression.reservoir
    assert grown.distortion == pytest.approx(grown.measure_distortion(recent), rel=1e-4)
    # More of the same data is no drift: the grown codebook's baseline distortion is measured
    # on raw recent vectors, like the drift check, not on the decoded codes it learnt from
    # (which are smoother, and made every such codebook look drifted at once: a retrain loop).
    add_synthetic(memory, SPACE.sample(600, seed=7), start=9000)
    assert memory._compression.upkeep_reason(memory.count()) is None
    assert memory.stats()["pending_codebook_version"] is None
    memory.close()


def test_policies_see_decoded_vectors_once_cases_are_codes(
    database_url: str, isolated_home: Path
) -> None:
    """After the switch the float32 column is empty; the policies' shortlist must still work."""

    vectors = SPACE.sample(1200, seed=5)
    memory = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    try:
        ids = add_synthetic(memory, vectors)
        assert memory.stats()["codebook_version"] == 1
        candidates = memory.candidates(vectors[7], size=20)
        assert len(candidates) == 20
        assert ids[7] in [c.case_id for c in candidates]
        for candidate in candidates:
            norm = float(np.linalg.norm(candidate.embedding))
            assert norm > 0.5  # a decoded code, not the zeros of a missing vector
        decoded = memory.vectors([ids[7]])[0]
        target = vectors[7] / np.linalg.norm(vectors[7])
        assert float(decoded @ target) / float(np.linalg.norm(decoded)) > 0.8
    finally:
        memory.close()


def test_reservoir_is_half_precision_and_an_older_store_is_converted_on_open(
    database_url: str, isolated_home: Path
) -> None:
    """The reservoir counts in bytes_per_case, so it is kept as float16; a store written
    before that (float32 rows, migration 0006 not applied) is converted when it opens."""
    from memory_agent.store.models import ReservoirRow

    vectors = SPACE.sample(1000, seed=11)
    settings = compressed_settings(isolated_home)
    memory = CaseMemory(settings, database_url=database_url)
    add_synthetic(memory, vectors)
    stats = memory.stats()
    kept = memory._compression.reservoir
    assert kept.dtype == np.float32 and kept.shape == (256, SPACE.dim)
    assert stats["reservoir_bytes"] == 256 * SPACE.dim * 2
    np.testing.assert_allclose(kept, vectors[-256:], atol=1e-3)
    memory.close()

    # Make it the store an older version wrote: float32 rows, 0006 and everything after it
    # not applied (alembic's own downgrade, so later migrations' tables go too).
    from alembic import command

    from memory_agent.store.database import _alembic_config

    engine = create_engine(database_url)
    with engine.begin() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0005_vector_changes")
        for slot, vector in enumerate(vectors[-256:]):
            conn.execute(
                ReservoirRow.__table__.update()
                .where(ReservoirRow.slot == slot)
                .values(vector=np.asarray(vector, np.float32).tobytes())
            )
        stamped = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        assert stamped == ["0005_vector_changes"]
    engine.dispose()

    reopened = CaseMemory(settings, database_url=database_url)
    try:
        converted = reopened._compression.reservoir
        assert converted.shape == (256, SPACE.dim)
        np.testing.assert_allclose(converted, vectors[-256:], atol=1e-3)
        assert reopened.stats()["distortion"] == pytest.approx(stats["distortion"], rel=1e-3)
    finally:
        reopened.close()


def test_training_a_codebook_on_a_small_store_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The first codebook trains on a few thousand cases, fewer than FAISS's k-means asks
    for; its per-sub-quantiser warnings (hundreds with OPQ) must not reach the terminal."""
    from memory_agent.store.codebook import Codebook

    book = Codebook.train(SPACE.sample(2000, seed=3), version=1, m=20, reduce_to=120)
    assert book.nlist >= 1 and book.distortion > 0
    captured = capfd.readouterr()
    assert "WARNING" not in captured.err and captured.out == ""


def test_the_switch_waits_until_exact_vectors_outgrow_the_ram_budget(
    tmp_path: Path, isolated_home: Path
) -> None:
    """Exact search while the float32 index fits `exact_ram_budget_mb`; past it, codes in RAM
    and float16 copies on disk, with the file compacted after the switch."""
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    budget_cases = 1500  # (384 * 4 + 8) bytes each
    settings = compressed_settings(
        isolated_home, exact_ram_budget_mb=budget_cases * (384 * 4 + 8) / 2**20
    )
    vectors = SPACE.sample(1600, seed=11)
    memory = CaseMemory(settings, database_url=url)
    add_synthetic(memory, vectors[:1400])  # past codebook_min_cases, within the budget
    stats = memory.stats()
    assert stats["index_kind"] == "flat" and stats["codebook_version"] is None
    assert stats["ram_bytes_per_case"] == pytest.approx(384 * 4 + 8)
    file_before = stats["database_file_bytes_per_case"]
    add_synthetic(memory, vectors[1400:], start=1400)  # 1600 > 1500: over the budget
    stats = memory.stats()
    assert stats["index_kind"] == "opq-ivf-pq" and stats["rerank"] is True
    # RAM: codes and ids, two codebook copies (the store's and the index's), the reservoir.
    book = memory._compression.active
    assert book is not None
    assert stats["index_bytes"] == 1600 * (book.m + 8)
    assert stats["codebook_bytes"] == 2 * book.nbytes()
    assert stats["ram_bytes_per_case"] == pytest.approx(
        (stats["index_bytes"] + stats["codebook_bytes"] + 256 * 384 * 2) / 1600
    )
    assert stats["disk_bytes_per_case"] == pytest.approx(
        stats["code_bytes"] + 384 * 2 + (stats["codebook_disk_bytes"] + 256 * 384 * 2) / 1600,
        rel=1e-3,
    )
    assert stats["bytes_per_case"] == max(stats["ram_bytes_per_case"], stats["disk_bytes_per_case"])
    # The freed float32 pages went back to the file system.
    assert stats["database_file_bytes_per_case"] < file_before - 384
    memory.close()
