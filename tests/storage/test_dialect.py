"""PostgreSQL connections taken from the pool: their transaction begins at the checkout,
with the same isolation and durability, and a connection the server dropped is replaced."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, func, insert, select, text

from securemail.storage.engine import connect, transaction
from tests.queue.conftest import POSTGRES, pg_schema, pg_url

__all__ = ["pg_schema"]

_TABLE = Table("dialect_rows", MetaData(), Column("id", Integer, primary_key=True))


@pytest.fixture
def engine(pg_schema: str) -> Iterator[Engine]:
    """An engine on a fresh PostgreSQL schema with the test table."""
    engine = connect(pg_url(pg_schema))
    _TABLE.create(engine)
    yield engine
    engine.dispose()


def _backend(engine: Engine) -> int:
    with transaction(engine, "test", write=False) as conn:
        return int(conn.execute(select(func.pg_backend_pid())).scalar_one())


def test_a_pooled_connection_is_in_its_transaction_when_handed_out(engine: Engine) -> None:
    """The checkout has begun the transaction: the server reports one open, with the
    default isolation (read committed) and synchronous_commit on, before any statement."""
    _backend(engine)  # the connection goes back to the pool, then is taken again
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "read committed"
        assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"


def test_a_failed_transaction_leaves_nothing(engine: Engine) -> None:
    """What a transaction wrote before it failed is rolled back with it (the BEGIN sent at
    the checkout is that transaction's), and the next one commits."""
    _backend(engine)
    with pytest.raises(RuntimeError), transaction(engine, "test", write=True) as conn:
        conn.execute(insert(_TABLE).values(id=1))
        raise RuntimeError("after the insert")
    with transaction(engine, "test", write=True) as conn:
        conn.execute(insert(_TABLE).values(id=2))
    with transaction(engine, "test", write=False) as conn:
        assert conn.execute(select(_TABLE.c.id)).scalars().all() == [2]


def test_a_connection_the_server_dropped_is_replaced(engine: Engine) -> None:
    """After the server ends a pooled connection (as a restart would), the next transaction
    runs on a fresh one instead of failing."""
    stale = _backend(engine)
    with psycopg.connect(POSTGRES.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (stale,))
    with transaction(engine, "test", write=True) as conn:
        conn.execute(insert(_TABLE).values(id=3))
    assert _backend(engine) != stale
