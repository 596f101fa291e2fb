"""250 means durable: safe settings enforced, failures reported, no half-written entry, kill -9."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from securemail.queue import Direction, QueueError, QueueReason, QueueStore
from tests.queue.conftest import NOW, message, pg_url

ROOT = Path(__file__).resolve().parents[2]


def test_durable_settings_are_in_force(store: QueueStore, url: str) -> None:
    """Every connection commits durably: SQLite WAL + synchronous=FULL, PostgreSQL sync commit."""
    settings = store.durability()
    if url.startswith("sqlite"):
        assert settings == {
            "journal_mode": "wal",
            "synchronous": "2",
            "foreign_keys": "1",
            "busy_timeout": "30000",
        }
    else:
        assert settings == {"synchronous_commit": "on"}


def test_synchronous_commit_off_is_refused(pg_schema: str) -> None:
    """A PostgreSQL session with synchronous_commit=off could lose a 250'd message: refused."""
    with pytest.raises(QueueError) as refused:
        QueueStore.open(pg_url(pg_schema, "-csynchronous_commit%3Doff"))
    assert refused.value.reason is QueueReason.UNSAFE_SETTINGS


def test_synchronous_commit_local_is_accepted(pg_schema: str) -> None:
    """synchronous_commit=local still flushes the local WAL before the commit returns."""
    url = pg_url(pg_schema, "-csynchronous_commit%3Dlocal").replace("+psycopg", "")
    with QueueStore.open(url) as store:
        assert store.durability() == {"synchronous_commit": "local"}


def test_in_memory_sqlite_is_refused() -> None:
    """An in-memory SQLite database is not durable and is refused."""
    with pytest.raises(QueueError) as refused:
        QueueStore.open("sqlite://")
    assert refused.value.reason is QueueReason.UNSAFE_SETTINGS


def test_unreachable_postgresql_is_unavailable() -> None:
    """A database that cannot be reached is QueueError UNAVAILABLE (callers answer 451)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(QueueError) as refused:
        QueueStore.open(f"postgresql://root@127.0.0.1:{port}/test?connect_timeout=10")
    assert refused.value.reason is QueueReason.UNAVAILABLE


def test_sqlite_file_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist is QueueError UNAVAILABLE."""
    with pytest.raises(QueueError) as refused:
        QueueStore.open(f"sqlite:///{tmp_path / 'missing' / 'queue.db'}")
    assert refused.value.reason is QueueReason.UNAVAILABLE


_FAIL_SQLITE = """
CREATE TRIGGER fail_accept BEFORE INSERT ON events WHEN NEW.event = 'accepted'
BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END
"""
_FAIL_POSTGRESQL = (
    "CREATE FUNCTION fail_accept() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$",
    "CREATE TRIGGER fail_accept BEFORE INSERT ON events FOR EACH ROW "
    "WHEN (NEW.event = 'accepted') EXECUTE FUNCTION fail_accept()",
)


def test_failed_enqueue_leaves_nothing(store: QueueStore, url: str) -> None:
    """A failure after the message row was written rolls back all of it: no half entry."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in _FAIL_POSTGRESQL if conn.dialect.name == "postgresql" else [_FAIL_SQLITE]:
            conn.exec_driver_sql(statement)
    engine.dispose()
    with pytest.raises(QueueError) as failed:
        store.enqueue(message("a@m.nz", "b@m.nz", body=b"secret body"), NOW)
    assert failed.value.reason is QueueReason.UNAVAILABLE
    assert "disk full" in failed.value.detail and "secret" not in str(failed.value)
    assert store.list() == [] and sum(store.counts().values()) == 0


_CHILD = """
import sys
from datetime import timedelta
from securemail.queue import Direction, QueueStore
from tests.queue.conftest import NOW, message

store = QueueStore.open(sys.argv[1])
for n in range(10):
    store.enqueue(message(), NOW)
store.claim(Direction.OUTBOUND, NOW, limit=4)
n = 0
while True:
    entry_id = store.enqueue(message("a@m.nz", "b@m.nz", body=b"x" * 4096), NOW)
    print(entry_id, flush=True)
    n += 1
"""


def test_kill_9_loses_nothing_acknowledged(url: str) -> None:
    """kill -9 mid-enqueue: every acknowledged entry is whole; claimed entries come back."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = [child.stdout.readline().strip() for _ in range(30)]
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    acknowledged += rest.split()
    with QueueStore.open(url) as store:
        assert store.recover(NOW) == 4
        entries = {e.id: e for e in store.list(limit=100_000)}
        assert set(acknowledged) <= set(entries)
        for entry_id in acknowledged:
            assert entries[entry_id].pending() == ("a@m.nz", "b@m.nz")
            assert store.body(entry_id) == b"x" * 4096
        for entry in entries.values():  # even the unacknowledged: whole or absent
            assert entry.recipients and store.events(entry.id)[0].event == "accepted"
        assert len(store.claim(Direction.OUTBOUND, NOW, limit=100_000)) == len(entries)
