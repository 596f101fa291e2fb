"""The queue: messages with their bodies, per-recipient outcomes, events, delivery keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("mail_from", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("auth", sa.Text),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("next_attempt_at", _TIME),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_reply", sa.Text),
        sa.Column("reason", sa.String(64)),
        sa.Column("warned", sa.Boolean, nullable=False),
    )
    op.create_index("ix_messages_claim", "messages", ["direction", "state", "next_attempt_at"])
    op.create_index("ix_messages_state_updated", "messages", ["state", "updated_at"])
    op.create_table(
        "recipients",
        sa.Column(
            "entry_id",
            sa.String(32),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_reply", sa.Text),
        sa.Column("reason", sa.String(64)),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("recipient", sa.Text),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_events_entry_id", "events", ["entry_id"])
    op.create_table(
        "delivery_keys",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("stored_at", _TIME, nullable=False),
    )
    op.create_index("ix_delivery_keys_stored_at", "delivery_keys", ["stored_at"])


def downgrade() -> None:
    op.drop_table("delivery_keys")
    op.drop_table("events")
    op.drop_table("recipients")
    op.drop_table("messages")
