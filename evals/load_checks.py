"""The load benchmark's invariants, checked against the database once every worker is done.

- lost: an acknowledged add that is not stored live with its text and namespace (unless a
  delete of it was acknowledged or interrupted), or an acknowledged delete whose case is
  still live;
- duplicated: more than one live case with one content in one namespace (every add has a
  unique text, and the shared file's cases must be stored once however many workers import
  it at once);
- phantom: a live case no acknowledged or interrupted operation wrote (a failed write that
  stored something anyway);
- lost_updates: a shared case with fewer visits than the acknowledged feedback on it, or
  more than that plus the feedback a kill interrupted;
- index_in_step: every worker's long-lived index, the observer's, and a freshly opened one
  hold exactly the live cases of the database;
- opens_clean: the store opens without error, and SQLite's integrity and foreign-key checks
  pass.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select, text

from memory_agent.evals.load_journal import History
from memory_agent.evals.load_worker import SHARED, STAGE, index_vs_database


def check_store(memory: Any, history: History, import_cases: int) -> dict[str, Any]:
    """Every invariant on the open store `memory` (freshly opened after the run)."""
    from memory_agent.store.models import CaseRow, CaseStatRow

    with memory.engine.connect() as conn:
        rows = conn.execute(
            select(CaseRow.id, CaseRow.namespace, CaseRow.task, CaseRow.content_hash,
                   CaseRow.deleted_at.is_not(None))
        ).all()  # fmt: skip
        visits = dict(
            conn.execute(
                select(CaseStatRow.case_id, func.sum(CaseStatRow.visits))
                .where(CaseStatRow.stage == STAGE)
                .group_by(CaseStatRow.case_id)
            ).all()
        )
    by_id = {int(r[0]): r for r in rows}
    live = {i: r for i, r in by_id.items() if not r[4]}

    deleted_acked = {a.ids[0] for a in history.acked if a.op == "delete"}
    deleted_maybe = {f["id"] for f in history.in_flight if f["op"] == "delete"}
    lost: list[dict[str, Any]] = []
    for acked in history.acked:
        if acked.op == "add":
            case_id = acked.ids[0]
            row = by_id.get(case_id)
            if row is None or row[1] != acked.ns or row[2] != acked.task:
                lost.append({"add": case_id, "worker": acked.worker, "stored": row is not None})
            elif row[4] and case_id not in deleted_acked | deleted_maybe:
                lost.append({"add": case_id, "worker": acked.worker, "deleted": True})
    lost += [{"delete": i} for i in sorted(deleted_acked) if i in live]

    counts = Counter((r[1], r[3]) for r in live.values())
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    shared_live = sum(1 for r in live.values() if r[1] == SHARED)
    imported = any(a.op == "import" for a in history.acked)
    if imported and shared_live < import_cases:
        lost.append({"shared_cases_missing": import_cases - shared_live})

    written = {a.task for a in history.acked if a.op == "add"}
    written |= {f["task"] for f in history.in_flight if f["op"] == "add"}
    phantom = [
        i for i, r in live.items() if r[1] != SHARED and r[2] not in written
    ]  # fmt: skip

    feedback: Counter[int] = Counter()
    for acked in history.acked:
        if acked.op == "outcome":
            feedback.update(acked.ids)
    interrupted = sum(1 for f in history.in_flight if f["op"] == "outcome")
    lost_updates = [
        {"case": i, "visits": int(visits.get(i, 0)), "acknowledged": feedback[i]}
        for i, r in live.items()
        if r[1] == SHARED and not feedback[i] <= int(visits.get(i, 0)) <= feedback[i] + interrupted
    ]

    return {
        "lost": lost,
        "duplicated": duplicated,
        "phantom": phantom[:20],
        "phantom_count": len(phantom),
        "lost_updates": lost_updates[:20],
        "lost_update_count": len(lost_updates),
        "live_cases": len(live),
        "shared_cases": shared_live,
        "feedback_acknowledged": sum(feedback.values()),
        "feedback_interrupted": interrupted,
        "fresh_index": index_vs_database(memory),
    }


def integrity(memory: Any) -> list[str]:
    """SQLite's own checks of the file (empty: all well); nothing to run on PostgreSQL."""
    if memory.engine.dialect.name != "sqlite":
        return []
    with memory.engine.connect() as conn:
        problems = [str(r[0]) for r in conn.execute(text("PRAGMA integrity_check"))]
        problems = [p for p in problems if p != "ok"]
        problems += [
            f"foreign key: {tuple(r)}" for r in conn.execute(text("PRAGMA foreign_key_check"))
        ]
    return problems


def in_step(report: dict[str, Any]) -> bool:
    return not report.get("missing") and not report.get("extra") and not report.get("skipped")
