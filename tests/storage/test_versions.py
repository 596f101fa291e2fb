"""The migration chain read and walked both ways, on SQLite and PostgreSQL: what ``securemail
db`` and ``check-config`` rest on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from securemail.storage.engine import connect, downgrade, upgrade
from securemail.storage.errors import StorageError, StorageReason
from securemail.storage.versions import chain, head, schema_version
from tests.queue.conftest import pg_schema, url

__all__ = ["pg_schema", "url"]


def test_the_chain_is_one_line_ending_at_head() -> None:
    """Each revision follows the one before it, the first follows nothing, the last is head."""
    revisions = chain()
    assert revisions[0].down is None and revisions[-1].id == head()
    assert [r.down for r in revisions[1:]] == [r.id for r in revisions[:-1]]
    assert all(r.doc for r in revisions)


def test_a_missing_sqlite_file_has_no_schema_and_is_not_made(tmp_path: Path) -> None:
    """Reading the version of a SQLite database that is not there creates no file."""
    database = tmp_path / "queue.sqlite"
    assert schema_version(f"sqlite:///{database}") == (None, head())
    assert not database.exists()


def test_an_unreachable_database_is_unavailable() -> None:
    """A PostgreSQL URL where nothing listens: StorageError database-unavailable."""
    with pytest.raises(StorageError) as refused:
        schema_version("postgresql://root@127.0.0.1:1/test?connect_timeout=2")
    assert refused.value.reason is StorageReason.UNAVAILABLE


def test_upgrade_then_downgrade_to_base_and_back(url: str) -> None:
    """Upgrade makes every table at head; downgrading one step drops what the last
    revision added; downgrading to base leaves no table of ours; upgrading again works."""
    engine = connect(url)
    try:
        upgrade(engine)
        assert schema_version(url) == (head(), head())
        before = chain()[-2].id
        downgrade(engine, before)
        assert schema_version(url)[0] == before
        downgrade(engine, "base")
        assert schema_version(url)[0] is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert schema_version(url)[0] == head()
        assert "messages" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
