"""The account tables, as migrations 0005, 0006 and 0008 of the node database create them.

The definitions below must stay identical to what the migration produces (a test compares
them). Names, addresses and throttle keys are stored lower-cased; times in UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from securemail.storage.types import UtcDateTime

NAME = String(320)  # RFC 5321 §4.5.3.1: 64-octet local part, @, 255-octet domain
metadata = MetaData()


def _owner(primary_key: bool = False) -> Column[str]:
    return Column(
        "account",
        NAME,
        ForeignKey("accounts.name", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


accounts = Table(
    "accounts",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("quota", BigInteger),
    Column("strong_auth_required", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("sole_use_acknowledged", UtcDateTime),
    Column("created", UtcDateTime, nullable=False),
    Column("password_changed", UtcDateTime, nullable=False),
    # 0006: may use the operator console and operator API tokens (securemail.web)
    Column("operator", Boolean, nullable=False, server_default=false()),
    # 0010: how the provider verified the holder's identity (docs/assurance.md)
    Column("identity_level", Text),
    Column("identity_method", Text),
    Column("identity_verified", UtcDateTime),
    # 0008: the IANA zone the webmail shows dates in; NULL is New Zealand time
    Column("time_zone", String(64)),
    # 0014: may make Privacy Act and OIA exports in the console (securemail.web.records)
    Column("records", Boolean, nullable=False, server_default=false()),
)

account_addresses = Table(
    "account_addresses",
    metadata,
    Column("address", NAME, primary_key=True),
    _owner(),
    Column("is_primary", Boolean, nullable=False),
    Index("ix_account_addresses_account", "account"),
)

app_passwords = Table(
    "app_passwords",
    metadata,
    Column("id", String(8), primary_key=True),  # the public first group of the password
    _owner(),
    Column("label", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("created", UtcDateTime, nullable=False),
    Column("last_used", UtcDateTime),
    # 0010: created while the account had a confirmed second factor
    Column("under_totp", Boolean, nullable=False, server_default=false()),
    Index("ix_app_passwords_account", "account"),
)

account_totp = Table(
    "account_totp",
    metadata,
    _owner(primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("confirmed", Boolean, nullable=False),
    Column("last_step", BigInteger),
    Column("created", UtcDateTime, nullable=False),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("scope", String(16), nullable=False),  # "account" or "source"
    Column("key", NAME, nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Index("ix_login_failures_key", "scope", "key", "time"),
)

login_locks = Table(
    "login_locks",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("key", NAME, primary_key=True),
    Column("until", UtcDateTime, nullable=False),
)

account_settings = Table(
    "account_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
