"""The migrations build exactly the tables the store uses, once, from any process."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta, timezone
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine

from securemail.access.schema import metadata as web_metadata
from securemail.accounts.schema import metadata as accounts_metadata
from securemail.conformance.schema import metadata as conformance_metadata
from securemail.contacts.store import metadata as contacts_metadata
from securemail.queue import Direction, QueueStore
from securemail.queue.schema import metadata
from securemail.records.schema import metadata as records_metadata
from securemail.storage.engine import MIGRATIONS
from securemail.structured.inbox import metadata as inbox_metadata
from tests.queue.conftest import NOW, message

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_the_tables(store: QueueStore, url: str) -> None:
    """The Alembic migrations (one chain, at its one head) create exactly the schema every
    store (queue, accounts, web, records, structured inbox, conformance) uses."""
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
        both = MetaData()
        tables = (
            metadata,
            accounts_metadata,
            web_metadata,
            records_metadata,
            inbox_metadata,
            conformance_metadata,
            contacts_metadata,
        )
        for table in (t for m in tables for t in m.tables.values()):
            table.to_metadata(both)
        assert compare_metadata(context, both) == []
    engine.dispose()


def test_reopen_is_a_no_op(url: str) -> None:
    """Opening a database already at the newest schema changes nothing and keeps the queue."""
    with QueueStore.open(url) as first:
        entry_id = first.enqueue(message(), NOW)
    with QueueStore.open(url) as second:
        assert [e.id for e in second.list()] == [entry_id]


def test_another_process_shares_the_queue(store: QueueStore, url: str) -> None:
    """A second process opens the same database while this one has it open, and both see mail."""
    store.enqueue(message(), NOW)
    script = (
        "import sys\n"
        "from securemail.queue import QueueStore\n"
        "from tests.queue.conftest import NOW, message\n"
        "with QueueStore.open(sys.argv[1]) as other:\n"
        "    print(len(other.list()), other.enqueue(message(), NOW))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen, entry_id = done.stdout.split()
    assert seen == "1" and store.get(entry_id) is not None


def test_times_are_utc_after_a_round_trip(store: QueueStore) -> None:
    """A time given in another zone comes back as the same instant, in UTC."""
    auckland = timezone(timedelta(hours=13))
    entry_id = store.enqueue(message(), NOW.astimezone(auckland))
    entry = store.get(entry_id)
    assert (
        entry is not None
        and entry.created_at == NOW
        and entry.created_at.utcoffset() == timedelta(0)
    )
    assert [e.id for e in store.claim(Direction.OUTBOUND, NOW)] == [entry_id]
