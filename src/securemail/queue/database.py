"""Opening a queue database safely: the dialect differences, durability checks, migrations.

SQLite: every connection uses WAL with ``synchronous=FULL`` (a commit is fsynced before it
returns, so the SMTP 250 that follows it is true), enforces foreign keys and waits for
locks; write transactions start with ``BEGIN IMMEDIATE`` so two writers queue up instead
of failing on a lock upgrade. PostgreSQL: every connection must have ``synchronous_commit``
other than ``off``. A database that is not durable is refused (UNSAFE_SETTINGS); one that
fails is UNAVAILABLE, which callers answer with a temporary reply.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from securemail.queue.model import QueueError, QueueReason

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 30_000  # a loaded disk may stall a writer for seconds; 451 only after this
_WRITE = "securemail_queue_write"
_MIGRATION_LOCK = 0x5EC0_0001  # pg_advisory_xact_lock key: one node migrates at a time
# Alembic's ``op`` and migration context are module-level proxies: two stores migrating at
# once in one process (the demo starts three nodes together) would run each other's
# operations on the wrong connection. One migration per process at a time.
_MIGRATING = threading.Lock()


def connect(url: str) -> Engine:
    """An engine for ``url`` whose every connection has the durable settings."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    # hide_parameters: errors and logs must never carry a message body or address list
    engine = create_engine(parsed, hide_parameters=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgresql_connect)
    else:
        raise QueueError(QueueReason.UNSAFE_SETTINGS, f"unsupported database {parsed.drivername}")
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to the newest schema, or to ``revision`` (no-op when it is there)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    with _MIGRATING, transaction(engine, "migrate", write=True) as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def transaction(engine: Engine, action: str, *, write: bool) -> Iterator[Connection]:
    """One transaction; any database failure in it becomes QueueError UNAVAILABLE."""
    try:
        with engine.connect() as connection:
            connection.execution_options(**{_WRITE: write})  # in place, this checkout only
            with connection.begin():
                yield connection
    except SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise QueueError(QueueReason.UNAVAILABLE, f"{action}: {first_line}") from exc


def insert_new(connection: Connection, table: Table, **values: Any) -> Insert:
    """INSERT that skips a row whose key exists (two nodes may race; neither fails)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).values(values).on_conflict_do_nothing()
    return sqlite.insert(table).values(values).on_conflict_do_nothing()


def durability(connection: Connection) -> dict[str, str]:
    """The settings that make a commit durable, as the database reports them."""
    if connection.dialect.name == "sqlite":
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        return {name: str(connection.exec_driver_sql(f"PRAGMA {name}").scalar()) for name in names}
    value = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
    return {"synchronous_commit": str(value)}


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    # The driver's own transaction handling would defer BEGIN; SQLAlchemy's begin event
    # below issues it instead (the pysqlite recipe in SQLAlchemy's SQLite dialect notes).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        synchronous = cursor.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        cursor.close()
    if str(mode).lower() != "wal" or synchronous < 2:  # 2 = FULL, 3 = EXTRA
        raise QueueError(
            QueueReason.UNSAFE_SETTINGS,
            f"SQLite journal_mode={mode} synchronous={synchronous}: need WAL and FULL "
            "(an in-memory database is not durable)",
        )


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgresql_connect(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        value = cursor.execute("SHOW synchronous_commit").fetchone()[0]
    finally:
        cursor.close()
    dbapi_connection.rollback()
    if value == "off":
        raise QueueError(
            QueueReason.UNSAFE_SETTINGS,
            "PostgreSQL synchronous_commit=off: a committed message could be lost in a crash",
        )
