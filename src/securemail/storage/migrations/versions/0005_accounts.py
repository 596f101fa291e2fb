"""Mailbox accounts: accounts, their addresses, app passwords, TOTP, the login throttle.

The tables are SecureMail's hosted-mailbox accounts (securemail.accounts.schema); they live
in the queue database so every process of a node shares one login throttle.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_NAME = sa.String(320)


def _owner(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "account",
        _NAME,
        sa.ForeignKey("accounts.name", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", _NAME, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("quota", sa.BigInteger),
        sa.Column("strong_auth_required", sa.Boolean, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("sole_use_acknowledged", _TIME),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("password_changed", _TIME, nullable=False),
    )
    op.create_table(
        "account_addresses",
        sa.Column("address", _NAME, primary_key=True),
        _owner(),
        sa.Column("is_primary", sa.Boolean, nullable=False),
    )
    op.create_index("ix_account_addresses_account", "account_addresses", ["account"])
    op.create_table(
        "app_passwords",
        sa.Column("id", sa.String(8), primary_key=True),
        _owner(),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("last_used", _TIME),
    )
    op.create_index("ix_app_passwords_account", "app_passwords", ["account"])
    op.create_table(
        "account_totp",
        _owner(primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("last_step", sa.BigInteger),
        sa.Column("created", _TIME, nullable=False),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", _NAME, nullable=False),
        sa.Column("time", _TIME, nullable=False),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["scope", "key", "time"])
    op.create_table(
        "login_locks",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("key", _NAME, primary_key=True),
        sa.Column("until", _TIME, nullable=False),
    )
    op.create_table(
        "account_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "account_settings",
        "login_locks",
        "login_failures",
        "account_totp",
        "app_passwords",
        "account_addresses",
        "accounts",
    ):
        op.drop_table(table)
