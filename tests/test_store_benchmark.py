"""`bench store` in small: one run reports the public search's latency by vector, bytes per
case in RAM and on disk, and how the store ranks (and when its re-rank copies went)."""

from __future__ import annotations

from pathlib import Path

from compressed_store import compressed_settings

from memory_agent.evals.store_benchmark import Workload, measure_store
from memory_agent.evals.synthetic_vectors import SyntheticSpace, exact_top_k

DIM = 32


def test_a_growing_run_reports_latency_bytes_and_the_rerank_mode(isolated_home: Path) -> None:
    space = SyntheticSpace(dim=DIM, latent=16)
    work = Workload(
        name="synthetic 32-d",
        base=space.sample(2400, seed=1),
        queries=space.sample(20, seed=2),
        texts=None,
        query_texts=None,
    )
    settings = compressed_settings(
        isolated_home,
        code_bytes=4,
        codebook_dim=16,
        codebook_upkeep=False,
        rerank_disk_budget_mb=1500 * DIM * 2 / 2**20,  # copies for 1,500 cases
    )
    truth = exact_top_k(work.queries, work.base, 10)
    # Two adds of 1,200: the store switches to codes with copies, then outgrows them.
    result = measure_store(work, settings, truth, lambda _message: None, grow_in=2)
    assert result["index_kind"] == "opq-ivf-pq" and result["rerank_mode"] == "codes"
    assert result["rerank_copies_dropped_at_cases"] == 2400
    assert result["rerank_copy_bytes"] == 0
    assert result["disk_bytes_per_case"] < DIM * 2  # codes alone
    assert result["ram_bytes_per_case"] > 0
    for key in ("search_p50_ms", "vector_search_p50_ms", "vector_search_p95_ms"):
        assert result[key] > 0
    assert 0 < result["vector_search_recall_at_10"] <= 1
    assert result["search_recall_at_10"] == result["vector_search_recall_at_10"]
    assert "text_search_p50_ms" not in result  # no text: no embedding to compare with
