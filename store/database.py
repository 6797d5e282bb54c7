"""Opening a database: engine set-up, connection checks and automatic migrations."""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from memory_agent.errors import StoreConnectionError, StoreCorruptError

_MIGRATIONS = Path(__file__).parent / "migrations"
# Stable key for PostgreSQL's advisory lock, so only one process migrates at a time.
_MIGRATION_LOCK_KEY = zlib.crc32(b"memory-agent-migrations")
# The history is one chain, 0001 -> 0002 -> ... -> 0006. It used to branch: 0002-0005 each
# revised 0001 and 0006 revised 0002, and every release applied all heads it shipped, so older
# stores have one alembic_version row per head. In that history a row also stood for these
# (superseded) parents, besides 0001_initial which every row implied.
_FORMER_PARENTS = {"0006_reservoir_float16": "0002_codebooks"}


def redact(url: str | URL) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


# SQLite's result codes for a damaged file: SQLITE_CORRUPT and SQLITE_NOTADB (and the
# extended codes built on them, in the low byte).
_SQLITE_DAMAGED = {11, 26}
_DAMAGED_WORDS = ("malformed", "not a database", "corrupt")


def corrupt_store_error(url: str | URL, exc: BaseException) -> StoreCorruptError | None:
    """A clear error if `exc` says the SQLite file at `url` is damaged; None otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlite_errorcode", None)
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    damaged = (isinstance(code, int) and code & 0xFF in _SQLITE_DAMAGED) or any(
        word in reason.lower() for word in _DAMAGED_WORDS
    )
    if not damaged:
        return None
    path = parsed.database or "?"
    return StoreCorruptError(
        f"The database file {path} is corrupt ({reason}); memory-agent cannot use it. "
        f"Restore it from a backup, or move it aside and rescue what SQLite can still read: "
        f"`sqlite3 {path} .recover | sqlite3 recovered.db`, then open recovered.db with "
        "--database-url sqlite:///recovered.db and `memory-agent memory export` its cases "
        "into a new store (`memory-agent memory import`)."
    )


# Reconnecting to a PostgreSQL server that went away (restart, fail-over): how long a new
# connection keeps trying, and the longest pause between tries. Only once the engine has
# connected: a wrong URL or a server that was never there still fails at once.
_RECONNECT_FOR_S = 30.0
_RECONNECT_MAX_PAUSE_S = 1.0
# SQLSTATEs of a connection the server ended: connection exceptions (class 08), and
# admin_shutdown / crash_shutdown / cannot_connect_now (a server stopping or starting).
_SERVER_GONE = {"57P01", "57P02", "57P03"}


def _server_gone(orig: BaseException | None, dbapi: Any) -> bool:
    """Whether a driver error means the connection to the server broke or could not be
    made (as opposed to an error in the statement: a constraint, a deadlock, bad SQL)."""
    state = getattr(orig, "sqlstate", None)
    if state:
        return bool(state.startswith("08") or state in _SERVER_GONE)
    # No SQLSTATE: the client library's own failure to connect or to read the reply.
    return dbapi is not None and isinstance(orig, dbapi.OperationalError)


def _keep_reconnecting(engine: Engine) -> None:
    """Make a PostgreSQL engine ride out a server restart.

    - New connections (the pool's pre-ping replaces a dead pooled one by a new one) retry
      with backoff for up to _RECONNECT_FOR_S while the server refuses them or is starting,
      so an operation that begins while the server is down waits for it instead of failing.
    - An operation whose connection breaks mid-way (or that gave up waiting) fails with a
      StoreConnectionError saying so, instead of a raw driver error. The store's
      transactions are all-or-nothing, so nothing is half-applied; the next operation gets a
      fresh connection.
    """
    connected = {"once": False}

    @event.listens_for(engine, "first_connect")
    def _first(_dbapi_connection: Any, _record: Any) -> None:
        connected["once"] = True

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if not connected["once"]:
            return None  # the first connection: the default, which fails at once
        deadline = time.monotonic() + _RECONNECT_FOR_S
        pause = 0.05
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if not _server_gone(exc, dialect.loaded_dbapi) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _RECONNECT_MAX_PAUSE_S)

    @event.listens_for(engine, "handle_error")
    def _translate(context: Any) -> BaseException | None:
        orig = context.original_exception
        if not connected["once"] or context.is_pre_ping:
            # Never connected: create_store_engine says "could not connect" and why. A failed
            # pre-ping is the pool's cue to reconnect: leave it be.
            return None
        if not _server_gone(orig, context.dialect.loaded_dbapi):
            return None
        reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        return StoreConnectionError(
            f"Lost the connection to the database server {redact(engine.url)} ({reason}); it "
            "may be restarting. The operation did not complete, and nothing of it is "
            "half-applied; a write may have been stored just before the connection broke, so "
            "check before repeating one. Try again: the store reconnects on its own once the "
            "server is back."
        )


def _unstorable_parameter(context: Any) -> BaseException | None:
    """A value the database cannot even take is bad input, whichever field it came in: a
    Python int beyond 64 bits (SQLite's driver raises a bare OverflowError, PostgreSQL says
    "bigint out of range") or a string with a lone surrogate, which has no UTF-8 form
    (UnicodeEncodeError). Say so instead of showing a traceback; the transaction is rolled
    back, so nothing of the call is stored."""
    from memory_agent.errors import InvalidInputError

    exc = context.original_exception
    # PostgreSQL takes the number and refuses it itself: numeric_value_out_of_range.
    if isinstance(exc, OverflowError) or getattr(exc, "sqlstate", None) == "22003":
        return InvalidInputError(
            f"A number given is outside the database's range ({exc}); ids and counts "
            "are 64-bit integers, from -9223372036854775808 to 9223372036854775807; the "
            "operation was refused."
        )
    if "cannot contain NUL" in str(exc):  # psycopg, before sending: PostgreSQL text has no NUL
        return InvalidInputError(
            "A text given contains a NUL character (\\x00), which PostgreSQL cannot store; "
            "remove it. The operation was refused."
        )
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInputError(
            f"A text given is not valid Unicode ({exc.reason} at position {exc.start}: "
            f"{exc.object[max(exc.start - 10, 0) : exc.end + 10]!r}); decode the source as "
            "UTF-8 before storing it. The operation was refused."
        )
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside a writer; NORMAL sync is durable against process crashes
    # (kill -9), which is the failure this store promises to survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine for `url`, checked to connect, with the schema migrated to the newest version."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreConnectionError(
            f"Database URL {url!r} is not a valid SQLAlchemy URL. Use sqlite:///path/to/file.db "
            "or postgresql+psycopg://user:password@host:5432/dbname "
            "(MEMORY_AGENT_DATABASE_URL or --database-url)."
        ) from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database:
            # sqlite:// and sqlite:/// name no file: SQLAlchemy then opens a private in-memory
            # database, and everything stored would vanish when the process ends.
            raise StoreConnectionError(
                f"Database URL {url!r} names no file, which would mean a throwaway in-memory "
                "database: whatever is stored would be gone when the command ends. Give a file, "
                "e.g. sqlite:///memory.db (relative) or sqlite:////abs/path/memory.db, or write "
                "sqlite:///:memory: if an in-memory store is what you want."
            )
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreConnectionError(
                    f"Cannot create the folder for the database file {path}: {exc}. "
                    "Choose a writable data directory with MEMORY_AGENT_HOME or --home."
                ) from exc
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreConnectionError(
            f"No database driver for {redact(parsed)}: {exc}. Use sqlite:/// or "
            "postgresql+psycopg:// (psycopg is installed with memory-agent)."
        ) from exc
    event.listen(engine, "handle_error", _unstorable_parameter)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        _keep_reconnecting(engine)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        if (corrupt := corrupt_store_error(parsed, exc)) is not None:
            raise corrupt from exc
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreConnectionError(
            f"Could not connect to {redact(parsed)}: {reason}. Check that the server is running "
            "and that the URL (MEMORY_AGENT_DATABASE_URL or --database-url) is right."
        ) from exc
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()  # a store that cannot be migrated must not leave its pool open
        if (corrupt := corrupt_store_error(parsed, exc)) is not None:
            raise corrupt from exc
        raise
    except BaseException:
        engine.dispose()
        raise
    return engine


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revisions() -> set[str]:
    """The revisions a fully migrated store is at."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def _chain() -> list[str]:
    """Every revision, oldest first; the history is linear (test_migrations checks it)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def _collapse_former_heads(conn: Connection) -> None:
    """Rewrite a store stamped at several heads of the old branched history to the newest of
    them, so alembic sees a single revision of the linear chain (it cannot upgrade rows where
    one is an ancestor of another). {0002, 0003, 0004} becomes 0004, then 0005 and 0006 run.
    """
    from alembic.runtime.migration import MigrationContext

    rows = set(MigrationContext.configure(conn).get_current_heads())
    if len(rows) < 2:
        return
    chain = _chain()
    unknown = rows - set(chain)
    if unknown:
        raise StoreConnectionError(
            f"The database is at migrations {sorted(unknown)} this version of memory-agent does "
            "not know; it was written by a newer version. Upgrade memory-agent to open it."
        )
    newest = max(rows, key=chain.index)
    applied = rows | {chain[0]} | {_FORMER_PARENTS[r] for r in rows if r in _FORMER_PARENTS}
    skipped = [r for r in chain[: chain.index(newest)] if r not in applied]
    if skipped:  # no release stamped such a state; refuse rather than skip migrations
        raise StoreConnectionError(
            f"The database's migration state {sorted(rows)} lacks {skipped}, which no release "
            "produced; restore it from a backup or re-import its cases into a new store."
        )
    conn.execute(text("DELETE FROM alembic_version"))
    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": newest})


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op on an up-to-date store."""
    from alembic import command

    heads = head_revisions()
    if current_revisions(engine) == heads:
        return
    config = _alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            # Take the write lock before reading the version, so two processes opening a new
            # file at once do not both create the tables.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        _collapse_former_heads(conn)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def insert_if_absent(session: Any, table: Any, values: dict[str, Any]) -> None:
    """INSERT a row unless one with the same key exists, atomically (ON CONFLICT DO NOTHING):
    two processes creating the same namespace or metadata row at once must both succeed."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())


def become_sqlite_writer(session: Any) -> None:
    """Make this SQLite transaction the database's one writer before it reads: the driver runs
    reads before the first write outside any transaction, and a transaction that read first
    could not become the writer once another one committed. A write that changes nothing."""
    session.execute(text("UPDATE namespaces SET name = name WHERE 1 = 0"))


def in_id_list(column: Any, dialect: str, name: str = "ids") -> Any:
    """`column IN (the ids)` with the whole list as one bound parameter `name` (give its value
    with `id_list_value`). The statement is then compiled once and cached: `column.in_(ids)`
    is rendered again at every execution, which made a 50-case shortlist read cost several
    times the query itself. PostgreSQL takes the list as an array; SQLite as a JSON array
    read by json_each."""
    from sqlalchemy import BigInteger, bindparam, func, literal_column, select
    from sqlalchemy.dialects.postgresql import ARRAY

    if dialect == "postgresql":
        from sqlalchemy import any_

        return column == any_(bindparam(name, type_=ARRAY(BigInteger())))
    return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(name))))


def id_list_value(ids: Any, dialect: str) -> Any:
    """The bound value of an `in_id_list` parameter for these ids."""
    import json

    numbers = [int(i) for i in ids]
    return numbers if dialect == "postgresql" else json.dumps(numbers)
