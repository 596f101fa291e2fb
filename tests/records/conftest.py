"""The records log on both engines: a migrated node database, empty, private to the test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from securemail.records.chain import NewRecord, RecordClass, record
from securemail.storage.engine import connect, upgrade
from tests.queue.conftest import pg_schema, pg_url

__all__ = ["pg_schema"]

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A node database URL on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    schema: str = request.getfixturevalue("pg_schema")
    return pg_url(schema)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """The node database at the newest schema."""
    engine = connect(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def some_records(engine: Engine, count: int, *, start: datetime = T0) -> None:
    """Append ``count`` message records, one a minute, alternating two citizens."""
    for n in range(count):
        who = "aroha@msp.nz" if n % 2 == 0 else "wiremu@msp.nz"
        record(
            engine,
            NewRecord(
                start + timedelta(minutes=n),
                RecordClass.MESSAGE,
                "queue.delivered",
                subjects=("clerk@agency.govt.nz", who),
                message_id=f"<{n}@agency.govt.nz>",
                details={"queue_id": f"q{n}", "from": "clerk@agency.govt.nz", "to": who},
            ),
        )
