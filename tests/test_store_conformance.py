"""The store contract, run against a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect

from memory_agent.errors import CaseNotFoundError, InvalidInputError
from memory_agent.store import CaseMemory, NewCase, StageStats
from memory_agent.store.database import current_revisions, head_revisions

TASKS = [
    "What is the capital of France?",
    "Which city is the capital of Germany?",
    "How many legs does a spider have?",
    "Count the number of 1 bits in the binary form of 37.",
    "Spell the word 'banana' backwards.",
]


def test_schema_is_migrated_to_head(memory: CaseMemory) -> None:
    inspector = inspect(memory.engine)
    tables = set(inspector.get_table_names())
    assert {"cases", "case_stats", "namespaces", "store_meta", "alembic_version"} <= tables
    columns = {c["name"] for c in inspector.get_columns("cases")}
    assert {
        "id", "namespace", "task", "plan", "trajectory", "answer", "reward", "outcome",
        "source", "meta", "created_at", "updated_at", "embedding", "code",
        "codebook_version", "deleted_at", "content_hash",
    } <= columns  # fmt: skip
    stat_columns = {c["name"] for c in inspector.get_columns("case_stats")}
    assert {"case_id", "stage", "visits", "q_value", "reward_sum", "last_reward"} <= stat_columns
    assert current_revisions(memory.engine) == head_revisions()


def test_add_get_round_trip(memory: CaseMemory) -> None:
    case = memory.add(
        TASKS[0],
        plan="1. recall the capital",
        trajectory=[{"tool": "search", "output": "Paris"}],
        answer="Paris",
        reward=1.0,
        meta={"level": 1},
    )
    again = memory.get(case.id)
    assert again.task == TASKS[0]
    assert again.trajectory == [{"tool": "search", "output": "Paris"}]
    assert again.answer == "Paris"
    assert again.outcome == "success"  # derived from the reward
    assert again.meta == {"level": 1}
    assert again.created_at.tzinfo is not None
    assert memory.count() == 1


def test_search_ranks_the_similar_task_first(memory: CaseMemory) -> None:
    ids = memory.add_many([NewCase(task=t, reward=1.0) for t in TASKS])
    hits = memory.search("What's the capital city of France?", k=3)
    assert hits[0].case.id == ids[0]
    assert hits[0].score > hits[1].score >= hits[2].score
    assert len(hits) == 3


def test_search_filters(memory: CaseMemory) -> None:
    memory.add_many(
        [
            NewCase(task=TASKS[0], reward=0.0, meta={"family": "geo"}),
            NewCase(task=TASKS[1], reward=1.0, meta={"family": "geo"}),
            NewCase(task=TASKS[2], reward=1.0, meta={"family": "bio"}),
        ]
    )
    hits = memory.search(TASKS[0], k=5, filters={"outcome": "success"})
    assert {h.case.task for h in hits} == {TASKS[1], TASKS[2]}
    hits = memory.search(TASKS[0], k=5, filters={"family": "bio"})
    assert [h.case.task for h in hits] == [TASKS[2]]
    hits = memory.search(TASKS[0], k=5, filters={"min_reward": 0.5, "family": "geo"})
    assert [h.case.task for h in hits] == [TASKS[1]]


def test_namespaces_are_isolated(memory: CaseMemory) -> None:
    memory.add(TASKS[0], namespace="alice")
    memory.add(TASKS[0], namespace="bob")
    memory.add(TASKS[2], namespace="bob")
    assert [h.case.namespace for h in memory.search(TASKS[0], k=5, namespace="alice")] == ["alice"]
    assert memory.count("bob") == 2
    assert memory.namespaces() == ["alice", "bob"]


def test_update_re_embeds_a_changed_task(memory: CaseMemory) -> None:
    first, second = memory.add_many([NewCase(task=TASKS[0]), NewCase(task=TASKS[2])])
    memory.update(first, task="Spell the word 'apple' backwards.", reward=1.0)
    hits = memory.search("Reverse the spelling of a word", k=2)
    assert hits[0].case.id == first
    updated = memory.get(first)
    assert updated.outcome == "success"
    with pytest.raises(InvalidInputError, match="updatable fields"):
        memory.update(first, id=5)


def test_delete_tombstones(memory: CaseMemory) -> None:
    keep, gone = memory.add_many([NewCase(task=TASKS[0]), NewCase(task=TASKS[1])])
    memory.delete(gone)
    assert [h.case.id for h in memory.search(TASKS[1], k=5)] == [keep]
    with pytest.raises(CaseNotFoundError):
        memory.get(gone)
    assert memory.get(gone, include_deleted=True).id == gone
    with pytest.raises(CaseNotFoundError):
        memory.delete(gone)
    assert memory.stats()["tombstoned"] == 1
    assert memory.purge() == 1
    assert memory.stats()["tombstoned"] == 0


def test_merge_keeps_statistics(memory: CaseMemory) -> None:
    a, b = memory.add_many(
        [
            NewCase(task=TASKS[0], reward=1.0, stats={"plan": StageStats(3, 0.9, 2.7, 1.0)}),
            NewCase(
                task=TASKS[0] + " ",
                reward=0.0,
                stats={"plan": StageStats(1, 0.1, 0.1, 0.0), "refine": StageStats(2, 0.5, 1, 1)},
            ),
        ]
    )
    merge = memory.merge(a, [b])
    assert merge.dropped == (b,)
    kept = memory.get(a)
    assert kept.stats["plan"].visits == 4
    assert kept.stats["plan"].q_value == pytest.approx((3 * 0.9 + 1 * 0.1) / 4)
    assert kept.stats["plan"].reward_sum == pytest.approx(2.8)
    assert kept.stats["refine"].visits == 2
    assert kept.reward == pytest.approx(0.5)
    assert kept.meta["merged_from"] == [b]
    assert memory.get(b, include_deleted=True).id == b
    assert [h.case.id for h in memory.search(TASKS[0], k=5)] == [a]


def test_dedupe_merges_near_duplicates_only(memory: CaseMemory) -> None:
    ids = memory.add_many(
        [
            NewCase(task="What is the capital of France?", reward=0.0),
            NewCase(task="What is the capital of France ?", reward=1.0),
            NewCase(task=TASKS[2], reward=1.0),
        ]
    )
    assert memory.find_duplicates(threshold=0.95) == [[ids[0], ids[1]]]
    merges = memory.dedupe(threshold=0.95)
    assert len(merges) == 1 and merges[0].kept == ids[1]  # the rewarded one survives
    assert memory.count() == 2


def test_budget_evicts_lowest_reward_then_oldest(memory: CaseMemory) -> None:
    ids = memory.add_many(
        [
            NewCase(task=TASKS[0], reward=1.0),
            NewCase(task=TASKS[1], reward=0.0),
            NewCase(task=TASKS[2], reward=1.0),
            NewCase(task=TASKS[3], reward=0.0),
        ]
    )
    evicted = memory.set_budget(None, 2)
    assert evicted == [ids[1], ids[3]]
    # A new case is protected from its own eviction: the oldest of the best goes instead.
    new = memory.add(TASKS[4], reward=0.5)
    assert memory.count() == 2
    assert {c.id for c in memory.list_cases()} == {ids[2], new.id}
    assert memory.budget() == 2
    # A batch larger than the budget keeps its best cases.
    batch = memory.add_many(
        [NewCase(task=t, reward=r) for t, r in zip(TASKS, [0, 1, 0, 1, 0], strict=True)]
    )
    assert {c.id for c in memory.list_cases()} == {batch[1], batch[3]}


def test_list_cases_pages_newest_first(memory: CaseMemory) -> None:
    ids = memory.add_many([NewCase(task=t) for t in TASKS])
    assert [c.id for c in memory.list_cases(limit=2)] == ids[::-1][:2]
    assert [c.id for c in memory.list_cases(limit=2, offset=2)] == ids[::-1][2:4]


def test_export_import_round_trip(memory: CaseMemory, tmp_path: Path) -> None:
    memory.add_many(
        [
            NewCase(task=TASKS[0], plan="p", answer="Paris", reward=1.0, meta={"x": 1},
                    stats={"plan": StageStats(2, 0.7, 1.4, 1.0)}),
            NewCase(task=TASKS[3], trajectory={"steps": [1, 2]}),
        ]
    )  # fmt: skip
    out = tmp_path / "cases.jsonl"
    assert memory.export(out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["stats"]["plan"]["visits"] == 2
    report = memory.import_file(out, namespace="copy")
    assert (report.added, report.skipped_duplicates) == (2, 0)
    copied = memory.list_cases("copy")
    assert {c.task for c in copied} == {TASKS[0], TASKS[3]}
    assert next(c for c in copied if c.task == TASKS[0]).stats["plan"].q_value == 0.7
    # Re-running an import adds nothing: it is idempotent.
    assert memory.import_file(out, namespace="copy").skipped_duplicates == 2
    assert memory.count("copy") == 2


def test_import_memento_case_bank(memory: CaseMemory, memento_sample: Path) -> None:
    report = memory.import_file(memento_sample, fmt="memento", namespace="memento")
    rows = [json.loads(line) for line in memento_sample.read_text().splitlines()]
    assert report.added == len(rows) == memory.count("memento")
    positives = sum(r["case_label"] == "positive" for r in rows)
    successes = memory.search(rows[0]["case"], k=len(rows), namespace="memento",
                              filters={"outcome": "success"})  # fmt: skip
    assert len(successes) == positives
    top = memory.search(rows[0]["case"], k=1, namespace="memento")[0].case
    assert top.task == rows[0]["case"] and top.plan == rows[0]["plan"]
    assert top.source == "memento"


def test_reopen_rebuilds_the_index_without_embedding(
    memory: CaseMemory, database_url: str, tmp_path: Path
) -> None:
    ids = memory.add_many([NewCase(task=t) for t in TASKS])
    memory.delete(ids[1])
    query = memory.vectors([ids[3]])
    memory.close()

    class NoEmbedder:
        name = "sentence-transformers/all-MiniLM-L6-v2"
        dim = 384

        def embed(self, texts: object) -> np.ndarray:
            raise AssertionError("reopening must not re-embed stored cases")

    reopened = CaseMemory(memory.settings, embedder=NoEmbedder(), database_url=database_url)
    try:
        hits = reopened.search(query[0], k=10)
        assert [h.case.id for h in hits][0] == ids[3]
        assert {h.case.id for h in hits} == set(ids) - {ids[1]}
        assert reopened.stats()["cases"] == 4
    finally:
        reopened.close()


def test_async_variants(memory: CaseMemory) -> None:
    async def scenario() -> list[int]:
        first = await memory.aadd(TASKS[0], reward=1.0)
        await memory.aadd_many([NewCase(task=TASKS[2])])
        hits = await memory.asearch(TASKS[0], k=1)
        await memory.aupdate(first.id, answer="Paris")
        assert (await memory.aget(first.id)).answer == "Paris"
        await memory.adelete(first.id)
        return [h.case.id for h in hits]

    assert len(asyncio.run(scenario())) == 1
    assert memory.count() == 1


def test_stats_reports_vector_bytes(memory: CaseMemory) -> None:
    memory.add_many([NewCase(task=t) for t in TASKS])
    stats = memory.stats()
    assert stats["cases"] == 5
    assert stats["index_kind"] == "flat"
    assert stats["dim"] == 384
    # Exact index: the float32 vector in the database; in RAM the vector and its int64 id;
    # bytes_per_case is the larger of the two.
    assert stats["disk_bytes_per_case"] == pytest.approx(384 * 4)
    assert stats["ram_bytes_per_case"] == pytest.approx(384 * 4 + 8)
    assert stats["bytes_per_case"] == pytest.approx(384 * 4 + 8)
    assert stats["total_bytes_per_case"] == pytest.approx(384 * 4 * 2 + 8)
