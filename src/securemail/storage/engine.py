"""Opening the node's database safely: durable connections, transactions, migrations.

Every connection gets the durable settings of its dialect (securemail.storage.dialect).
A database that is not durable is refused (UNSAFE_SETTINGS); one that fails is
UNAVAILABLE, which callers answer with a temporary reply. The schema is the one Alembic
chain in ``migrations/`` (queue, accounts and web tables, in revision order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from securemail.storage import dialect, prepared
from securemail.storage.dialect import WRITE
from securemail.storage.errors import StorageError, StorageReason

MIGRATIONS = Path(__file__).with_name("migrations")
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
    # hide_parameters: errors and logs must never carry a message body or address list.
    # A server's connections can go stale (restart, failover): each is checked when taken
    # from the pool, by the BEGIN of its transaction (dialect.postgresql_checkout), not by
    # the pool's pre-ping, which was a round trip of its own. A SQLite file cannot go stale.
    engine = create_engine(parsed, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", dialect.sqlite_connect)
        event.listen(engine, "begin", dialect.sqlite_begin)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", dialect.postgresql_connect)
        event.listen(engine, "checkout", dialect.postgresql_checkout)
        event.listen(engine, "checkin", prepared.forget_cursor)
    else:
        detail = f"unsupported database {parsed.drivername}"
        raise StorageError(StorageReason.UNSAFE_SETTINGS, detail)
    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def migrations() -> Config:
    """The migration chain's configuration (no alembic.ini: the chain ships in the package)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to the newest schema, or to ``revision`` (no-op when it is there)."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (each revision's downgrade, newest first), in
    one transaction: a failure leaves the schema as it was."""
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = migrations()
    with _MIGRATING, transaction(engine, "migrate", write=True) as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        step(config, revision)


@contextmanager
def transaction(engine: Engine, action: str, *, write: bool) -> Iterator[Connection]:
    """One transaction; any database failure in it becomes StorageError UNAVAILABLE."""
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE: write})  # in place, this checkout only
            with connection.begin():
                yield connection
    except SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise StorageError(StorageReason.UNAVAILABLE, f"{action}: {first_line}") from exc
