"""The web's tables (browser sessions, API tokens), as migration 0006 creates them.

They sit next to the account tables (securemail.accounts.schema, which also carries 0006's
``operator`` column); the definitions must stay identical to the migration (a test compares
them). Only SHA-256 digests of session ids and tokens are stored, never the values.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, MetaData, String, Table, Text

from securemail.accounts.schema import NAME, accounts
from securemail.storage.types import UtcDateTime

metadata = MetaData()


def _owner() -> Column[str]:
    return Column("account", NAME, ForeignKey(accounts.c.name, ondelete="CASCADE"), nullable=False)


web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 (hex) of the cookie value
    _owner(),
    Column("scopes", String(64), nullable=False),  # space-separated web.model.Scope values
    Column("csrf", String(64), nullable=False),
    Column("method", String(16)),  # None while the login waits for its second factor
    Column("pending", LargeBinary),  # the password, sealed to the cookie, until then
    Column("created", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Index("ix_web_sessions_account", "account"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),  # public, for listing and revoking
    Column("hash", String(64), nullable=False),  # SHA-256 (hex) of the whole token
    _owner(),
    Column("scope", String(16), nullable=False),
    Column("label", Text, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("last_used", UtcDateTime),
    Index("ix_api_tokens_hash", "hash", unique=True),
    Index("ix_api_tokens_account", "account"),
)
