"""The node's database: one engine, the dialect differences, shared column types, one
Alembic migration chain. Each owner (queue, accounts, web) keeps its own tables and rows
on top; nothing here knows what they hold.

    StorageError(reason: StorageReason)   "database-unavailable", "database-unsafe-settings"
"""
