"""The dialect differences: each engine's durable settings, its BEGIN, and upserts.

SQLite: every connection uses WAL with ``synchronous=FULL`` (a commit is fsynced before it
returns, so the SMTP 250 that follows it is true), enforces foreign keys and waits for
locks; write transactions start with ``BEGIN IMMEDIATE`` so two writers queue up instead
of failing on a lock upgrade. PostgreSQL: every connection must have ``synchronous_commit``
other than ``off``; a connection taken from the pool starts its transaction there, and
that BEGIN is also the check that the connection still works (a stale one is replaced).
"""

from __future__ import annotations

import functools
from typing import Any

from psycopg import pq
from sqlalchemy import Column, Connection, Insert, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InvalidatePoolError

from securemail.storage.errors import StorageError, StorageReason
from securemail.storage.prepared import Prepared

BUSY_TIMEOUT_MS = 30_000  # a loaded disk may stall a writer for seconds; 451 only after this
WRITE = "securemail_write"  # execution option: this transaction writes


def insert_new(connection: Connection, table: Table, **values: Any) -> Insert:
    """INSERT that skips a row whose key exists (two nodes may race; neither fails)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).values(values).on_conflict_do_nothing()
    return sqlite.insert(table).values(values).on_conflict_do_nothing()


@functools.cache
def insert_ignoring(
    dialect_name: str, table: Table, returning: Column[Any] | None = None
) -> Insert:
    """As :func:`insert_new`, built once per dialect and table: the row comes as the
    execution's parameters (a statement built once keeps its cache key, so SQLAlchemy
    finds its compiled form without building it again); RETURNING ``returning``."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing()
    return statement if returning is None else statement.returning(returning)


_NOTIFY = Prepared(select(func.pg_notify(bindparam("b_channel"), bindparam("b_payload"))))


def notify(connection: Connection, channel: str, payload: str) -> None:
    """PostgreSQL: tell the channel's listeners ``payload`` when this transaction commits
    (NOTIFY; repeats within one transaction are sent once). SQLite has no such thing: its
    readers poll."""
    if connection.dialect.name == "postgresql":
        _NOTIFY.run(connection, {"b_channel": channel, "b_payload": payload})


def durability(connection: Connection) -> dict[str, str]:
    """The settings that make a commit durable, as the database reports them."""
    if connection.dialect.name == "sqlite":
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        return {name: str(connection.exec_driver_sql(f"PRAGMA {name}").scalar()) for name in names}
    value = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
    return {"synchronous_commit": str(value)}


def sqlite_connect(dbapi_connection: Any, record: Any) -> None:
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
        raise StorageError(
            StorageReason.UNSAFE_SETTINGS,
            f"SQLite journal_mode={mode} synchronous={synchronous}: need WAL and FULL "
            "(an in-memory database is not durable)",
        )


def sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def postgresql_connect(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        value = cursor.execute("SHOW synchronous_commit").fetchone()[0]
    finally:
        cursor.close()
    dbapi_connection.rollback()
    if value == "off":
        raise StorageError(
            StorageReason.UNSAFE_SETTINGS,
            "PostgreSQL synchronous_commit=off: a committed message could be lost in a crash",
        )


def postgresql_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Begin the transaction of a connection taken from the pool, and so check it.

    psycopg would send the same ``BEGIN`` (no isolation level or access mode is set on
    these connections) before the first statement; sent here, it is also the liveness
    check the pool's pre-ping made with a ``SELECT 1`` of its own (a round trip and a
    statement a transaction). A connection that cannot begin, as after a server restart,
    makes the pool drop its connections and take a fresh one, as the pre-ping did.
    """
    pgconn = dbapi_connection.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return  # already in a transaction (not one the pool hands out): leave it to psycopg
    result = pgconn.exec_(b"BEGIN")
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise InvalidatePoolError(f"BEGIN on checkout failed: {pgconn.error_message!r}")
