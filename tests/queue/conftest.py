"""Queue stores on both engines: a SQLite file in tmp_path and a fresh PostgreSQL schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from securemail.queue import Direction, NewMessage, QueueStore, RetryPolicy

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432/test"
RETRY = RetryPolicy()


def message(
    *recipients: str,
    direction: Direction = Direction.OUTBOUND,
    body: bytes = b"Subject: test\r\n\r\nhello\r\n",
    mail_from: str = "alice@agency.govt.nz",
    kind: str = "mail",
) -> NewMessage:
    """A message from the agency to ``recipients`` (one ministry recipient by default)."""
    return NewMessage(
        direction=direction,
        org_id="agency",
        mail_from=mail_from,
        recipients=recipients or ("bob@ministry.govt.nz",),
        body=body,
        client="relay 127.0.0.1",
        message_id="<test-1@agency.govt.nz>",
        kind=kind,
    )


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(
            POSTGRES.replace("+psycopg", ""), autocommit=True, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {POSTGRES} is not reachable ({exc})"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    schema = f"q_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_url(schema: str, *options: str) -> str:
    """The test database with ``schema`` first on the search path, plus server ``options``."""
    settings = "%20".join([f"-csearch_path%3D{schema}", *options])
    return f"{POSTGRES}?options={settings}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A queue database URL on each engine, empty and private to the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    schema: str = request.getfixturevalue("pg_schema")
    return pg_url(schema)


@pytest.fixture
def store(url: str) -> Iterator[QueueStore]:
    """An open queue store on each engine, closed at the end of the test."""
    with QueueStore.open(url, retry=RETRY) as opened:
        yield opened
