"""The exact tier in float16: half the RAM of float32, and the same answers.

Before its switch to codes a store holds every vector in RAM for an exact scan; with
`exact_precision=float16` (the default) the scan reads half the bytes and proposes
`exact_rescore_candidates`, which the float32 vectors stored in the database re-score. The
answers (ids, order, scores) must be those of the float32 scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from compressed_store import add_synthetic

from memory_agent.settings import Settings
from memory_agent.store import CaseMemory, NewCase

DIM = 384


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors in tight clusters, so that many scores are near ties (where float16's
    ~1e-3 error would reorder a float16-only answer)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    points = centres[rng.integers(0, 20, n)] + 0.05 * rng.standard_normal((n, DIM))
    points = points.astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def open_store(home: Path, url: str, precision: str) -> CaseMemory:
    settings = Settings(home=home, store={"exact_precision": precision})
    return CaseMemory(settings, database_url=url)


def test_float16_scan_answers_as_float32_with_half_the_ram(
    tmp_path: Path, isolated_home: Path
) -> None:
    vectors = clustered(3000, seed=3)
    queries = clustered(60, seed=4)
    url = f"sqlite:///{tmp_path / 'exact.db'}"
    half = open_store(isolated_home, url, "float16")
    position = {case_id: row for row, case_id in enumerate(add_synthetic(half, vectors))}
    full = open_store(isolated_home, url, "float32")  # the same rows, another index

    for query in queries:
        got = half.search(query, k=10)
        want = full.search(query, k=10)
        assert [h.case.id for h in got] == [h.case.id for h in want]
        # float32's scores, not float16's (whose error is ~1e-3).
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-6)
        # Against numpy's float32 cosine of the stored vectors.
        rows = [position[h.case.id] for h in got]
        assert [h.score for h in got] == pytest.approx((vectors[rows] @ query).tolist(), abs=1e-5)

    shortlist_half = half.candidates(queries[0], size=50)
    shortlist_full = full.candidates(queries[0], size=50)
    assert [c.case_id for c in shortlist_half] == [c.case_id for c in shortlist_full]
    assert [c.similarity for c in shortlist_half] == pytest.approx(
        [c.similarity for c in shortlist_full], abs=1e-6
    )

    assert half.stats()["ram_bytes_per_case"] == pytest.approx(DIM * 2 + 8)
    assert full.stats()["ram_bytes_per_case"] == pytest.approx(DIM * 4 + 8)
    half.close()
    full.close()


def test_float16_scan_keeps_filters_and_deletes(tmp_path: Path, isolated_home: Path) -> None:
    vectors = clustered(400, seed=5)
    memory = open_store(isolated_home, f"sqlite:///{tmp_path / 'f.db'}", "float16")
    cases = [NewCase(task=f"case {i}", meta={"group": i % 4}) for i in range(len(vectors))]
    ids = memory.add_many(cases, embeddings=vectors)
    target = ids[7]
    assert memory.search(vectors[7], k=1)[0].case.id == target
    memory.delete(target)
    assert target not in [h.case.id for h in memory.search(vectors[7], k=10)]
    # A filter keeps to its cases, however near the others are.
    only = memory.search(vectors[7], k=5, filters={"group": 1})
    assert len(only) == 5
    assert {ids.index(h.case.id) % 4 for h in only} == {1}
    memory.close()
