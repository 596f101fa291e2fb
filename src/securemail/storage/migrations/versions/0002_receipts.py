"""Receipt tracking: per-recipient receipt state and the signatures that asked for receipts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_RECEIPT_COLUMNS = ("receipt_state", "receipt_deadline", "receipted_at", "receipt", "evidence")


def upgrade() -> None:
    # The server default fills the rows already queued (SQLite adds a NOT NULL column only
    # with one), and new rows that do not name the column.
    op.add_column(
        "recipients",
        sa.Column("receipt_state", sa.String(16), nullable=False, server_default="none"),
    )
    op.add_column("recipients", sa.Column("receipt_deadline", _TIME))
    op.add_column("recipients", sa.Column("receipted_at", _TIME))
    op.add_column("recipients", sa.Column("receipt", sa.LargeBinary))
    op.add_column("recipients", sa.Column("evidence", sa.Text))
    op.create_index(
        "ix_recipients_receipt_due", "recipients", ["receipt_state", "receipt_deadline"]
    )
    op.create_table(
        "signatures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("content_identifier", sa.String(256), nullable=False),
        sa.Column("peer_org", sa.String(255), nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("signed_data", sa.LargeBinary, nullable=False),
        sa.Column("basis", sa.Text, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_signatures_entry_id", "signatures", ["entry_id"])
    op.create_index(
        "ix_signatures_content_identifier", "signatures", ["content_identifier"], unique=True
    )


def downgrade() -> None:
    op.drop_table("signatures")
    op.drop_index("ix_recipients_receipt_due", table_name="recipients")
    # SQLite drops columns only by rebuilding the table: batch mode does that on SQLite.
    with op.batch_alter_table("recipients") as batch:
        for column in _RECEIPT_COLUMNS:
            batch.drop_column(column)
