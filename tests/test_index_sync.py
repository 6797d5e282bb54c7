"""Two processes on one store: each keeps its in-memory index in step with the other's writes
through the vector change log (store/index_sync.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from compressed_store import add_synthetic, compressed_settings
from sqlalchemy import create_engine, func, select

from memory_agent.evals.synthetic_vectors import SyntheticSpace
from memory_agent.store import CaseMemory
from memory_agent.store.change_models import VectorChangeRow
from memory_agent.store.models import CaseRow, CodebookRow

SPACE = SyntheticSpace()


def _syncing(home: Path, url: str) -> CaseMemory:
    """A store process that applies other processes' changes before every search."""
    return CaseMemory(compressed_settings(home, index_sync_interval=0.0), database_url=url)


def _top(memory: CaseMemory, vectors: np.ndarray) -> list[int]:
    return [int(i) for i in memory.nearest(vectors, 1)[1][:, 0]]


def test_a_reader_sees_another_writers_adds_and_deletes(
    database_url: str, isolated_home: Path
) -> None:
    vectors = SPACE.sample(60, seed=11)
    reader = _syncing(isolated_home, database_url)
    writer = _syncing(isolated_home, database_url)
    try:
        first = add_synthetic(writer, vectors[:30], "first")
        assert _top(reader, vectors[:30]) == first  # the reader opened before any case
        second = add_synthetic(writer, vectors[30:], "second")
        writer.delete(first[0])
        found = _top(reader, vectors)
        assert found[30:] == second
        assert first[0] not in found and found[1:30] == first[1:]
        # Both agree on what is searchable, and the reader's own writes still count.
        mine = add_synthetic(reader, SPACE.sample(5, seed=12), "mine")
        assert _top(writer, SPACE.sample(5, seed=12)) == mine
    finally:
        reader.close()
        writer.close()


def test_a_reader_follows_another_processes_switch_to_codes(
    database_url: str, isolated_home: Path
) -> None:
    vectors = SPACE.sample(1200, seed=21)
    reader = _syncing(isolated_home, database_url)
    try:
        add_synthetic(reader, vectors[:100], "early")
        script = (
            "import sys, numpy as np\n"
            "from memory_agent.evals.synthetic_vectors import SyntheticSpace\n"
            "from memory_agent.settings import Settings\n"
            "from memory_agent.store import CaseMemory, NewCase\n"
            "v = SyntheticSpace().sample(1200, seed=21)[100:]\n"
            "s = Settings(home=sys.argv[2], store={'codebook_min_cases': 1000,"
            " 'exact_ram_budget_mb': 0, 'reservoir_size': 256,"
            " 'reindex_in_background': False})\n"
            "m = CaseMemory(s, database_url=sys.argv[1])\n"
            "m.add_many([NewCase(task=f'late {i}') for i in range(len(v))], embeddings=v)\n"
            "assert m.stats()['codebook_version'] == 1\n"
            "m.close()\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, database_url, str(isolated_home)],
            check=True,
            timeout=600,
        )
        assert reader.stats()["codebook_version"] is None  # not looked at the log yet
        queries = vectors[::40]
        found = reader.nearest(queries, 10)[1]
        assert reader.stats()["codebook_version"] == 1 and reader.stats()["index_kind"] != "flat"
        assert len(set(found[:, 0].tolist())) == len(queries)
        # Each query is a stored vector: its own case comes back among the first ten.
        ids = [c.id for c in reader.list_cases(limit=2000)]
        order = sorted(ids)
        expected = [order[i] for i in range(0, 1200, 40)]
        hits = [e in row for e, row in zip(expected, found.tolist(), strict=True)]
        assert np.mean(hits) >= 0.9
    finally:
        reader.close()


def test_a_reader_behind_a_pruned_log_rebuilds(database_url: str, isolated_home: Path) -> None:
    settings = compressed_settings(isolated_home, index_sync_interval=0.0, change_log_keep=100)
    reader = CaseMemory(settings, database_url=database_url)
    writer = CaseMemory(settings, database_url=database_url)
    try:
        vectors = SPACE.sample(300, seed=31)
        ids = [writer.add(f"one at a time {i}", embedding=v).id for i, v in enumerate(vectors)]
        with writer.engine.connect() as conn:
            oldest = conn.execute(select(func.min(VectorChangeRow.seq))).scalar_one()
        assert oldest > 1  # the changes the reader has not seen are gone from the log
        assert _top(reader, vectors) == ids
    finally:
        reader.close()
        writer.close()


def _each_in_own_top10(memory: CaseMemory, vectors: np.ndarray, ids: list[int]) -> bool:
    """Every case among the 10 nearest to its own vector (top-1 can be a near-twin's code)."""
    found = memory.nearest(vectors, 10)[1]
    return all(case_id in found[p] for p, case_id in enumerate(ids))


def _codes_by_version(url: str) -> dict[int | None, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(CaseRow.codebook_version, func.count())
            .where(CaseRow.deleted_at.is_(None))
            .group_by(CaseRow.codebook_version)
        ).all()
    engine.dispose()
    return {version: int(n) for version, n in rows}


def test_a_writer_that_missed_a_new_codebook_writes_codes_of_the_version_in_force(
    database_url: str, isolated_home: Path
) -> None:
    """A process that only writes never searches, so it never syncs: when another process has
    made and finished a new codebook meanwhile, its next write must still store codes of the
    version in force, not of the retired one (which every index would misread)."""
    vectors = SPACE.sample(1000, seed=31)
    late = SPACE.sample(20, seed=32)
    first = _syncing(isolated_home, database_url)
    add_synthetic(first, vectors)  # the switch to codes: version 1
    stale = _syncing(isolated_home, database_url)
    try:
        assert first.new_codebook("manual") == 2
        assert first.reindex() is True  # version 2 in force; `stale` still holds version 1
        late_ids = add_synthetic(stale, late, "late", start=1000)
        assert _codes_by_version(database_url) == {2: 1020}
        fresh = _syncing(isolated_home, database_url)
        try:
            assert _each_in_own_top10(fresh, late, late_ids)
            assert _each_in_own_top10(first, late, late_ids)
            assert _each_in_own_top10(stale, late, late_ids)
        finally:
            fresh.close()
    finally:
        stale.close()
        first.close()


def test_a_writer_that_missed_a_pending_codebook_gives_new_cases_its_codes(
    database_url: str, isolated_home: Path
) -> None:
    """Cases written while a re-encode is pending must carry the pending version's code too,
    or the job's last step (one UPDATE over the cases that have it) leaves them behind."""
    vectors = SPACE.sample(1000, seed=33)
    late = SPACE.sample(20, seed=34)
    first = _syncing(isolated_home, database_url)
    add_synthetic(first, vectors)
    stale = _syncing(isolated_home, database_url)
    try:
        assert first.new_codebook("manual") == 2
        # Re-encode everything there is, then a write from the process that missed version 2
        # lands before the job's final step.
        keeper = first._compression
        while keeper.reencode_batch(None):
            pass
        late_ids = add_synthetic(stale, late, "late", start=1000)
        assert first.reindex() is True
        assert _codes_by_version(database_url) == {2: 1020}
        assert _each_in_own_top10(first, late, late_ids)
        # Coded from their own vectors on write, not re-encoded from a version-1 code later.
        book = first._compression.active
        assert book is not None and book.version == 2
        stored = {case.id: case for case in first.get_many(late_ids)}
        assert len(stored) == 20
        engine = create_engine(database_url)
        with engine.connect() as conn:
            codes = dict(
                conn.execute(select(CaseRow.id, CaseRow.code).where(CaseRow.id.in_(late_ids))).all()
            )
        engine.dispose()
        expected = book.encode(late)
        assert all(codes[i] == expected[p].tobytes() for p, i in enumerate(late_ids))
    finally:
        stale.close()
        first.close()


def test_a_store_whose_cases_hold_codes_of_a_retired_version_still_finds_them(
    database_url: str, isolated_home: Path
) -> None:
    """Codes of another version (left by an older program) are decoded with their own codebook
    when the index is built, never read as codes of the version in force."""
    from sqlalchemy import update

    vectors = SPACE.sample(1000, seed=35)
    memory = _syncing(isolated_home, database_url)
    ids = add_synthetic(memory, vectors)
    old = memory._compression.active
    assert old is not None
    memory.new_codebook("manual")
    assert memory.reindex() is True
    memory.close()
    stale_ids = ids[:10]
    engine = create_engine(database_url)
    with engine.begin() as conn:
        for case_id, code in zip(stale_ids, old.encode(vectors[:10]), strict=True):
            conn.execute(
                update(CaseRow)
                .where(CaseRow.id == case_id)
                .values(code=code.tobytes(), codebook_version=old.version)
            )
    engine.dispose()
    reopened = _syncing(isolated_home, database_url)
    try:
        assert _each_in_own_top10(reopened, vectors[:10], stale_ids)
    finally:
        reopened.close()


def test_two_processes_switching_to_codes_at_once_keep_one_codebook(
    database_url: str, isolated_home: Path
) -> None:
    """Both counted enough cases before either switched: the second switch is refused whole
    (nothing of it is stored) and that process takes the first one's codebook."""
    from memory_agent.store.compression import CodebookMoved
    from memory_agent.store.models import CodebookRow

    vectors = SPACE.sample(1000, seed=37)
    first = _syncing(isolated_home, database_url)
    second = _syncing(isolated_home, database_url)
    try:
        ids = add_synthetic(first, vectors)  # first switches at 1,000 cases
        with pytest.raises(CodebookMoved):
            second._compression.switch_to_codes(vectors, ids)  # what second would have done
        engine = create_engine(database_url)
        with engine.connect() as conn:
            books = conn.execute(select(CodebookRow.version, CodebookRow.status)).all()
        engine.dispose()
        assert [tuple(b) for b in books] == [(1, "active")]
        assert _codes_by_version(database_url) == {1: 1000}
        more = add_synthetic(second, SPACE.sample(10, seed=38), "more", start=1000)
        assert second._compression.in_force() == (1, None, False)
        assert _each_in_own_top10(first, SPACE.sample(10, seed=38), more)
    finally:
        second.close()
        first.close()


@pytest.mark.postgres
def test_one_process_at_a_time_runs_the_reencode_job(
    postgres_base_url: str, isolated_home: Path
) -> None:
    """On PostgreSQL two processes finishing the job at once could deadlock on the same rows:
    while one holds the job, another's background job leaves it and a caller that waits
    finds it done. (SQLite's single write lock already serialises the job's batches.)"""
    from conftest import fresh_postgres_database
    from sqlalchemy import text

    from memory_agent.store.index_sync import reindex_job

    database_url = fresh_postgres_database(postgres_base_url)

    vectors = SPACE.sample(1000, seed=39)
    memory = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    other = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    try:
        add_synthetic(memory, vectors)
        assert memory.new_codebook("manual") == 2
        other.sync(force=True)
        with reindex_job(other.engine, wait=False) as got:  # `other` runs the job
            assert got
            assert memory.reindex(wait=False) is False  # busy: nothing done
            assert memory.reindex_remaining() == 1000
            with reindex_job(memory.engine, wait=False) as second:
                assert not second
        assert other.reindex() is True
        assert memory.reindex() is True  # finished by the other: it only reloads
        assert memory.stats()["codebook_version"] == 2
        assert memory.reindex_remaining() == 0
        engine = create_engine(database_url)
        with engine.connect() as conn:  # the lock was given back
            assert conn.scalar(text("SELECT pg_try_advisory_lock(7204118936)")) is True
            conn.execute(text("SELECT pg_advisory_unlock(7204118936)"))
        engine.dispose()
    finally:
        other.close()
        memory.close()


def test_a_second_process_cannot_overwrite_the_stores_vector_space(
    database_url: str, isolated_home: Path
) -> None:
    """Both opened an empty store; the first to write claims the dimension. The other, still
    believing the store empty, must be checked against that claim, not replace it."""
    from memory_agent.errors import EmbedderError
    from memory_agent.store import NewCase

    first = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    second = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
    try:
        add_synthetic(first, SPACE.sample(3, seed=41))
        small = np.eye(8, dtype=np.float32)[:2]
        with pytest.raises(EmbedderError, match="384-dimensional"):
            second.add_many([NewCase(task="a"), NewCase(task="b")], embeddings=small)
        more = add_synthetic(second, SPACE.sample(2, seed=42), "more", start=3)
        assert len(more) == 2 and first.count() == 5
    finally:
        second.close()
        first.close()


_WRITER = """
import faulthandler, sys
faulthandler.enable()  # a crash in native code (FAISS, the driver) leaves its stack in stderr
sys.path.insert(0, sys.argv[4])
from pathlib import Path
from compressed_store import add_synthetic, compressed_settings
from memory_agent.evals.synthetic_vectors import SyntheticSpace
from memory_agent.store import CaseMemory
url, home, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
vectors = SyntheticSpace().sample(600, seed=seed)
memory = CaseMemory(compressed_settings(home, reindex_in_background=True), database_url=url)
for start in range(0, 600, 50):
    add_synthetic(memory, vectors[start:start + 50], f"w{seed}", start=start)
if memory._worker is not None:
    memory._worker.join()
memory.close()
"""


@pytest.mark.slow
def test_processes_writing_at_once_while_codebooks_change_leave_a_consistent_store(
    database_url: str, isolated_home: Path, tmp_path: Path
) -> None:
    """Two processes add cases into a new namespace at once (one of them trains the first
    codebook midway) while this one makes and finishes a new codebook: every write succeeds,
    one codebook is in force, every live case holds a code of it, and each is found."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    tests_dir = str(Path(__file__).parent)
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), database_url, str(isolated_home), str(seed), tests_dir],
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (51, 52)
    ]
    memory = _syncing(isolated_home, database_url)
    try:
        made = False
        for _ in range(200):
            if all(w.poll() is not None for w in writers):
                break
            memory.sync(force=True)
            if not made and memory._compression.active is not None:
                memory.new_codebook("manual")
                memory.reindex()
                made = True
            time.sleep(0.05)
        for writer in writers:
            _, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, f"writer exit {writer.returncode}: {err}"
        memory.sync(force=True)
        assert memory.reindex() is True
        engine = create_engine(database_url)
        with engine.connect() as conn:
            books = conn.execute(select(CodebookRow.version, CodebookRow.status)).all()
            raw = conn.scalar(
                select(func.count()).select_from(CaseRow).where(CaseRow.embedding.is_not(None))
            )
        engine.dispose()
        active = [version for version, status in books if status == "active"]
        assert len(active) == 1 and raw == 0
        assert _codes_by_version(database_url) == {active[0]: 1200}
        engine = create_engine(database_url)
        with engine.connect() as conn:
            id_of = dict(conn.execute(select(CaseRow.task, CaseRow.id)).all())
        engine.dispose()
        fresh = CaseMemory(compressed_settings(isolated_home), database_url=database_url)
        try:
            for seed in (51, 52):
                picks = list(range(0, 600, 60))
                vectors = SyntheticSpace().sample(600, seed=seed)[picks]
                ids = [id_of[f"w{seed} {i}"] for i in picks]
                assert _each_in_own_top10(fresh, vectors, ids)
        finally:
            fresh.close()
    finally:
        memory.close()


def test_the_dimension_is_read_from_the_database_before_any_sync(
    database_url: str, isolated_home: Path
) -> None:
    """Processes opened on an empty store learn the dimension, and find the cases, that
    another process stored first, without waiting for their sync interval."""
    from hash_embedder import HashEmbedder

    from memory_agent.store import NewCase

    settings = compressed_settings(isolated_home, index_sync_interval=3600)

    def open_store() -> CaseMemory:
        return CaseMemory(settings, embedder=HashEmbedder(), database_url=database_url)  # type: ignore[arg-type]

    by_text, by_vector, first = open_store(), open_store(), open_store()
    try:
        assert by_text.dim is None and first.dim is None
        ids = first.add_many([NewCase(task=f"task {i}") for i in range(5)])
        assert by_text.dim == HashEmbedder.dim
        assert [h.case.id for h in by_text.search("task 3", 1)] == [ids[3]]
        query = HashEmbedder().embed(["task 4"])
        assert by_vector.nearest(query, 1)[1][0, 0] == ids[4]
    finally:
        first.close()
        by_vector.close()
        by_text.close()
