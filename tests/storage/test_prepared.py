"""Prepared statements on SQLite and PostgreSQL: the same values, types and errors as
Connection.execute, run on the driver's cursor inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from securemail.storage.dialect import insert_ignoring
from securemail.storage.engine import connect, transaction
from securemail.storage.errors import StorageError, StorageReason
from securemail.storage.prepared import Prepared
from securemail.storage.types import UtcDateTime
from tests.queue.conftest import pg_schema, url

__all__ = ["pg_schema", "url"]

_TABLE = Table(
    "prepared_rows",
    MetaData(),
    Column("id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("until", UtcDateTime),
    Column("flag", Boolean, nullable=False),
    Column("count", Integer, nullable=False, server_default="0"),
    Column("body", LargeBinary),
)
T = _TABLE.c
INSERT = Prepared(_TABLE.insert())
BY_IDS = Prepared(select(_TABLE).where(T.id.in_(bindparam("b_ids", expanding=True))).order_by(T.id))
ACTIVE_DUE = Prepared(
    select(T.id)
    .where(
        T.state.in_(["incoming", "deferred"])
        | ((T.state == "active") & (T.at < bindparam("b_now")))
    )
    .order_by(T.id)
    .limit(bindparam("b_limit"))
)
UPDATE_ROW = Prepared(update(_TABLE).where(T.id == bindparam("b_id")))
COUNTED = Prepared(update(_TABLE).where(T.id == bindparam("b_id")).values(count=T["count"] + 1))
AT = datetime(2026, 12, 7, 21, 0, 1, 123456, tzinfo=UTC)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """An engine on a fresh database with the test table."""
    engine = connect(url)
    _TABLE.create(engine)
    yield engine
    engine.dispose()


def _row(key: str, state: str = "incoming", **more: object) -> dict[str, object]:
    return {"id": key, "state": state, "at": AT, "until": None, "flag": False} | more


def test_values_round_trip_through_the_types(engine: Engine) -> None:
    """Aware times (from any zone) come back as UTC, booleans as bool, bytes as bytes,
    NULL as None: what the types' processors did through Connection.execute."""
    elsewhere = AT.astimezone(timezone(timedelta(hours=13)))
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(
            conn, _row("a", at=elsewhere, until=AT + timedelta(days=1), flag=True, body=b"\x00\xff")
        )
        INSERT.run(conn, _row("b"))
    with transaction(engine, "test", write=False) as conn:
        a, b = BY_IDS.rows(conn, {"b_ids": ["b", "a"]})
    assert (a.id, a.at, a.until, a.flag, a.body) == (
        "a",
        AT,
        AT + timedelta(days=1),
        True,
        b"\x00\xff",
    )
    assert a.at.tzinfo is UTC and a.count == 0
    assert (b.id, b.until, b.flag, b.body) == ("b", None, False, None)
    with transaction(engine, "test", write=False) as conn:
        through_sqlalchemy = conn.execute(select(_TABLE).order_by(T.id)).all()
    assert [tuple(r) for r in through_sqlalchemy] == [tuple(a), tuple(b)]


def test_a_naive_time_is_refused(engine: Engine) -> None:
    """The bind processor of UtcDateTime still runs: a naive time is a ValueError."""
    with (
        pytest.raises(ValueError, match="timezone-aware"),
        transaction(engine, "test", write=True) as conn,
    ):
        INSERT.run(conn, _row("a", at=datetime(2026, 12, 7)))


def test_literals_limits_and_lists(engine: Engine) -> None:
    """The statement's own literals (a constant IN list, a state) bind as written; a
    limit and an expanding list of any length are the caller's."""
    states = ["incoming", "deferred", "active", "active", "delivered"]
    times = [AT, AT, AT - timedelta(minutes=5), AT + timedelta(minutes=5), AT]
    rows = [
        _row(str(i), state, at=t) for i, (state, t) in enumerate(zip(states, times, strict=True))
    ]
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, rows)
        due = ACTIVE_DUE.rows(conn, {"b_now": AT, "b_limit": 10})
        first = ACTIVE_DUE.rows(conn, {"b_now": AT, "b_limit": 1})
        for n in (1, 3, 5):
            assert len(BY_IDS.rows(conn, {"b_ids": [str(i) for i in range(n)]})) == n
    assert [r.id for r in due] == ["0", "1", "2"] and [r.id for r in first] == ["0"]


def test_updates_set_the_columns_given(engine: Engine) -> None:
    """An UPDATE sets the columns whose names come with it (one compiled form per set),
    and its count; an expression in the statement (count + 1) is kept."""
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, [_row("a"), _row("b")])
        assert UPDATE_ROW.run(conn, {"b_id": "a", "state": "active"}) == 1
        assert UPDATE_ROW.run(conn, {"b_id": "b", "flag": True, "until": AT}) == 1
        assert COUNTED.run(conn, {"b_id": "a", "state": "deferred"}) == 1
        assert UPDATE_ROW.run(conn, {"b_id": "none", "state": "active"}) == 0
        a, b = BY_IDS.rows(conn, {"b_ids": ["a", "b"]})
    assert (a.state, a.flag, a.count, a.until) == ("deferred", False, 1, None)
    assert (b.state, b.flag, b.count, b.until) == ("incoming", True, 0, AT)


def test_insert_ignoring_returns_only_a_new_row(engine: Engine) -> None:
    """The dialect's INSERT … ON CONFLICT DO NOTHING RETURNING: a row the first time only."""
    with transaction(engine, "test", write=True) as conn:
        insert = Prepared(insert_ignoring(conn.dialect.name, _TABLE, T.id))
        assert insert.first(conn, _row("a")) == ("a",)
        assert insert.first(conn, _row("a")) is None


def test_it_runs_in_the_callers_transaction(engine: Engine) -> None:
    """A rolled-back transaction takes the prepared statement's rows with it."""
    with pytest.raises(RuntimeError), transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, _row("a"))
        raise RuntimeError("roll back")
    with transaction(engine, "test", write=False) as conn:
        assert BY_IDS.rows(conn, {"b_ids": ["a"]}) == []


def test_driver_errors_are_sqlalchemys_and_then_unavailable(engine: Engine) -> None:
    """A duplicate key is SQLAlchemy's IntegrityError with the parameters hidden, and out
    of the transaction StorageError database-unavailable, as through Connection.execute."""
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, _row("a", body=b"secret body"))
    with pytest.raises(StorageError) as refused, transaction(engine, "test", write=True) as conn:
        try:
            INSERT.run(conn, _row("a", body=b"secret body"))
        except IntegrityError as error:
            assert "secret" not in str(error)
            raise
    assert refused.value.reason is StorageReason.UNAVAILABLE


def test_statement_listeners_see_every_statement(engine: Engine) -> None:
    """before_cursor_execute listeners (echo, counting) see the statement and its values."""
    seen: list[tuple[str, bool]] = []

    def listen(  # noqa: PLR0917 - SQLAlchemy's event signature
        conn: object, cursor: object, text: str, values: object, context: object, many: bool
    ) -> None:
        seen.append((text.split(maxsplit=1)[0], many))

    event.listen(engine, "before_cursor_execute", listen)
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, [_row("a"), _row("b")])
        BY_IDS.rows(conn, {"b_ids": ["a"]})
    assert [s for s in seen if s[0] != "BEGIN"] == [("INSERT", True), ("SELECT", False)]


def test_an_idle_connection_keeps_no_cursor_or_rows(engine: Engine) -> None:
    """On PostgreSQL a transaction's statements share one cursor, closed with the rows it
    read when the connection goes back to the pool; on SQLite each statement has its own."""
    cursors: list[Any] = []

    def listen(  # noqa: PLR0917 - SQLAlchemy's event signature
        conn: object, cursor: object, text: str, values: object, context: object, many: bool
    ) -> None:
        cursors.append(cursor)

    event.listen(engine, "before_cursor_execute", listen)
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, [_row("a", body=b"body"), _row("b", body=None)])
        assert [r.body for r in BY_IDS.rows(conn, {"b_ids": ["a"]})] == [b"body"]
        assert BY_IDS.first(conn, {"b_ids": ["b"]}) is not None
    if engine.dialect.name == "postgresql":
        assert len({id(c) for c in cursors}) == 1
        assert cursors[0].closed
    else:
        assert len({id(c) for c in cursors}) == len(cursors) > 1


def test_a_failed_statement_leaves_the_next_transaction_working(engine: Engine) -> None:
    """After a statement fails, the next transaction on the pooled connection runs its
    statements and reads their rows."""
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, _row("a"))
    with pytest.raises(StorageError), transaction(engine, "test", write=True) as conn:
        BY_IDS.rows(conn, {"b_ids": ["a"]})
        INSERT.run(conn, _row("a"))
    with transaction(engine, "test", write=True) as conn:
        INSERT.run(conn, _row("b"))
        assert [r.id for r in BY_IDS.rows(conn, {"b_ids": ["a", "b"]})] == ["a", "b"]


def test_python_side_defaults_are_refused(engine: Engine) -> None:
    """A column with a Python-side default cannot be prepared (its value is the caller's)."""
    table = Table(
        "other",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("n", Integer, default=5),
    )
    with (
        pytest.raises(ValueError, match="defaults"),
        transaction(engine, "test", write=False) as conn,
    ):
        Prepared(table.insert()).run(conn, {"id": 1})
