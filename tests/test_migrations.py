"""The migration history is one linear chain, and stores stamped at several heads of the old
branched history (0002-0005 on 0001, 0006 on 0002) open, upgrade and keep their cases."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from memory_agent.errors import StoreConnectionError
from memory_agent.store.database import (
    _alembic_config,
    create_store_engine,
    current_revisions,
    head_revisions,
)

CHAIN = [
    "0001_initial",
    "0002_codebooks",
    "0003_policy_state",
    "0004_run_log",
    "0005_vector_changes",
    "0006_reservoir_float16",
    "0007_rerank_vectors",
    "0008_skills",
    "0009_namespace_tokens",
]
RESERVOIR_ROW = np.linspace(-1, 1, 384, dtype=np.float32)


def test_the_history_is_one_chain_in_order() -> None:
    script = ScriptDirectory.from_config(_alembic_config())
    assert script.get_heads() == [CHAIN[-1]]
    assert head_revisions() == {CHAIN[-1]}
    for parent, child in zip(CHAIN, CHAIN[1:], strict=False):
        revision = script.get_revision(child)
        assert revision is not None and revision.down_revision == parent
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == CHAIN


def old_store(url: str, applied_up_to: str, stamped: set[str]) -> None:
    """A store an older release left: schema migrated through `applied_up_to` (the old heads'
    tables are independent, so applying them in chain order builds the same schema), one case
    and one float32 reservoir row, and alembic_version holding the old heads `stamped`."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, applied_up_to)
            tables = sa.MetaData()
            tables.reflect(conn, only=["namespaces", "cases", "vector_reservoir"])
            now = datetime.now(UTC)
            conn.execute(tables.tables["namespaces"].insert(), {"name": "old", "created_at": now})
            conn.execute(
                tables.tables["cases"].insert(),
                {"namespace": "old", "task": "kept across the upgrade", "source": "test",
                 "meta": {}, "content_hash": "h", "created_at": now, "updated_at": now},
            )  # fmt: skip
            # float32, as 0006 found it (or float16 if the old store had 0006 applied)
            dtype = np.float16 if "0006_reservoir_float16" in stamped else np.float32
            conn.execute(
                tables.tables["vector_reservoir"].insert(),
                {"slot": 0, "vector": RESERVOIR_ROW.astype(dtype).tobytes()},
            )
            conn.execute(sa.text("DELETE FROM alembic_version"))
            for revision in sorted(stamped):
                conn.execute(
                    sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                    {"v": revision},
                )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("applied_up_to", "stamped"),
    [
        # a release with 0002-0004: every head applied, one row each; 0005 and 0006 must run
        ("0004_run_log", {"0002_codebooks", "0003_policy_state", "0004_run_log"}),
        # 0002 was superseded by 0006 in alembic_version; nothing is left to run
        ("0006_reservoir_float16",
         {"0003_policy_state", "0004_run_log", "0005_vector_changes", "0006_reservoir_float16"}),
    ],
)  # fmt: skip
def test_a_store_stamped_at_the_old_heads_opens_upgrades_and_keeps_its_cases(
    database_url: str, applied_up_to: str, stamped: set[str]
) -> None:
    old_store(database_url, applied_up_to, stamped)

    engine = create_store_engine(database_url)  # migrates on open
    try:
        assert current_revisions(engine) == {CHAIN[-1]}
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            assert [r[0] for r in rows] == [CHAIN[-1]]
            tasks = conn.execute(sa.text("SELECT task FROM cases WHERE namespace = 'old'")).all()
            assert [t[0] for t in tasks] == ["kept across the upgrade"]
            (blob,) = conn.execute(sa.text("SELECT vector FROM vector_reservoir")).one()
            # converted to float16 exactly once, whether or not the old store had 0006
            np.testing.assert_allclose(np.frombuffer(blob, np.float16), RESERVOIR_ROW, atol=1e-3)
            assert "vector_changes" in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    # Opening again is a no-op.
    create_store_engine(database_url).dispose()


def test_a_state_no_release_produced_is_refused_not_half_migrated(database_url: str) -> None:
    # Every release applied all migrations it shipped, so no store has 0005 without 0002 and
    # 0004; collapsing such rows to 0005 would silently skip two migrations.
    old_store(database_url, "0002_codebooks", set())
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))
        for revision in ("0003_policy_state", "0005_vector_changes"):
            conn.execute(
                sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": revision}
            )
    engine.dispose()
    with pytest.raises(StoreConnectionError, match="0002_codebooks.*0004_run_log"):
        create_store_engine(database_url)
