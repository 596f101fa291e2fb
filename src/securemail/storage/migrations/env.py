"""Alembic's entry point for the node's one schema chain: migrate the connection handed over.

``securemail.storage.engine.upgrade`` opens the transaction (and, on PostgreSQL, takes the
migration lock) and passes its connection in ``config.attributes["connection"]``; there is
no alembic.ini and no URL here, so migrations run only through the store.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("migrations run through securemail.storage.engine.upgrade, not the CLI")
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
