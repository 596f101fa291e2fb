"""Claims are leases, and a delivery key is reserved before the delivery it guards.

``messages.lease_until``: an ACTIVE entry's claim holds until then (its worker renews it);
after it, any process of any node sharing the database may claim the entry again.
``delivery_keys.entry_id`` / ``delivered``: the entry that reserved a key to deliver under
it, and whether that delivery was recorded. Rows from before this revision are delivered.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("lease_until", sa.DateTime(timezone=True)))
    op.create_index("ix_messages_lease", "messages", ["state", "lease_until"])
    op.add_column("delivery_keys", sa.Column("entry_id", sa.String(32)))
    op.add_column(
        "delivery_keys",
        sa.Column("delivered", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.create_index("ix_delivery_keys_entry_id", "delivery_keys", ["entry_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_keys_entry_id", "delivery_keys")
    with op.batch_alter_table("delivery_keys") as batch:
        batch.drop_column("delivered")
        batch.drop_column("entry_id")
    op.drop_index("ix_messages_lease", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("lease_until")
