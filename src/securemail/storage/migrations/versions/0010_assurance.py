"""Sender assurance: how a mailbox holder logged in, carried with the message; identity.

``accounts.identity_level`` / ``identity_method`` / ``identity_verified``: how the provider's
operator verified the holder's identity (docs/assurance.md). ``app_passwords.under_totp``:
the app password was created while the account had a confirmed second factor (rows from
before this revision: false, as nothing says otherwise). ``messages.assurance``: the
submission's assurance snapshot (JSON, securemail.accounts.assurance), None for mail that
no mailbox holder submitted.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("identity_level", sa.Text))
    op.add_column("accounts", sa.Column("identity_method", sa.Text))
    op.add_column("accounts", sa.Column("identity_verified", sa.DateTime(timezone=True)))
    op.add_column(
        "app_passwords",
        sa.Column("under_totp", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("messages", sa.Column("assurance", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("assurance")
    with op.batch_alter_table("app_passwords") as batch:
        batch.drop_column("under_totp")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("identity_verified")
        batch.drop_column("identity_method")
        batch.drop_column("identity_level")
