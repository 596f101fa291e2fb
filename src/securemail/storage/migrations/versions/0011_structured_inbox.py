"""The pull queue of structured documents (issue 21).

``structured_inbox``: one row per delivery of a document to an organisation whose
application pulls (``[organisation.structured] kind = "pull"``), until it is taken.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "structured_inbox",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.Text, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_structured_inbox_org", "structured_inbox", ["org_id", "taken_at"])


def downgrade() -> None:
    op.drop_index("ix_structured_inbox_org", "structured_inbox")
    op.drop_table("structured_inbox")
