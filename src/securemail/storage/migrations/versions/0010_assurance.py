"""Sender assurance: how a mailbox holder logged in, carried with the message; identity.

``accounts.identity_level`` / ``identity_method`` / ``identity_verified``: how the provider's
operator verified the holder's identity (docs/assurance.md). ``app_passwords.under_totp``:
the app password was created while the account had a confirmed second factor (rows from
before this revision: false, as nothing says otherwise). ``messages.assurance``: the
submission's assurance snapshot (JSON, securemail.accounts.assurance), None for mail that
no mailbox holder submitted. ``contacts``: the organisations' contact register
(securemail.contacts).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
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
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("require", sa.Text, nullable=False),
        sa.Column("valid_for", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("attested", sa.Text),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_contacts_address", "contacts", ["org_id", "address"])


def downgrade() -> None:
    op.drop_index("ix_contacts_address", "contacts")
    op.drop_table("contacts")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("assurance")
    with op.batch_alter_table("app_passwords") as batch:
        batch.drop_column("under_totp")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("identity_verified")
        batch.drop_column("identity_method")
        batch.drop_column("identity_level")
