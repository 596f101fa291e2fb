"""An index for an upstream queue's backlog per member and for mail held for a key.

``ix_messages_kind_org``: the entries of one kind for one organisation by state: the
upstream queue's backlog (kind ``upstream``, per member) and its "the gateway answers,
send them now"; the key watch's release of one organisation's held entries goes by
``org_id`` and state too.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_kind_org", "messages", ["kind", "org_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_messages_kind_org", "messages")
