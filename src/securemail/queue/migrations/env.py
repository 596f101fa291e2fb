"""Alembic's entry point for the queue schema: migrate the connection the store hands over.

``securemail.queue.schema.upgrade`` opens the transaction (and, on PostgreSQL, takes the
migration lock) and passes its connection in ``config.attributes["connection"]``; there is
no alembic.ini and no URL here, so migrations run only through the store.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("queue migrations run through QueueStore.open, not the alembic CLI")
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
