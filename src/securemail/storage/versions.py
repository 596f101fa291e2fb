"""Where a database stands in the one migration chain, and which revisions the chain has.

What ``securemail db current`` and ``check-config`` read. Reading never creates: a SQLite
file that is not there is reported as having no schema, not made empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from securemail.storage.engine import connect, migrations, sqlite_path, transaction


@dataclass(frozen=True)
class Revision:
    """One step of the chain: its id, the one before it and what it does."""

    id: str
    down: str | None
    doc: str


def chain() -> list[Revision]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(migrations())
    revisions = [
        Revision(r.revision, _down(r.down_revision), (r.doc or "").strip())
        for r in script.walk_revisions()
    ]
    return revisions[::-1]


def _down(value: str | Sequence[str] | None) -> str | None:
    """A revision's predecessor; a merge revision has several."""
    return value if value is None or isinstance(value, str) else ",".join(value)


def head() -> str:
    """The revision this version of SecureMail expects."""
    found = ScriptDirectory.from_config(migrations()).get_current_head()
    if found is None:
        raise RuntimeError("the migration chain is empty")
    return found


def schema_version(url: str) -> tuple[str | None, str]:
    """(the database's revision, or None if it has no schema; the newest revision).

    Raises StorageError UNAVAILABLE when the database cannot be reached.
    """
    newest = head()
    file = sqlite_path(url)
    if file is not None and not file.is_file():
        return None, newest
    engine = connect(url)
    try:
        with transaction(engine, "schema version", write=False) as connection:
            return MigrationContext.configure(connection).get_current_revision(), newest
    finally:
        engine.dispose()
