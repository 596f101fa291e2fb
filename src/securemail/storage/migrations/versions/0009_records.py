"""Records: the one operations log (hash-chained), its head, signed checkpoints, legal holds.

The tables are securemail.records.schema's. ``records_head`` holds one row (id 1): the
chain's last sequence number and digest; every append locks and moves it, which is what
keeps the chain linear across processes and nodes sharing the database.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "records_log",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("record_class", sa.String(16), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("record", sa.Text),  # NULL once disposed of (its digest stays)
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("disposed_by", _SEQ),
    )
    op.create_index("ix_records_log_class_time", "records_log", ["record_class", "time"])
    op.create_index("ix_records_log_message_id", "records_log", ["message_id"])
    op.create_table(
        "records_subjects",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("address", sa.String(320), primary_key=True),
    )
    op.create_index("ix_records_subjects_address", "records_subjects", ["address"])
    head = op.create_table(
        "records_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "digest": _GENESIS}])
    op.create_table(
        "records_checkpoints",
        sa.Column("id", _SEQ, primary_key=True),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("signed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "records_sources",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_table(
        "records_holds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(320)),
        sa.Column("message_id", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("placed", _TIME, nullable=False),
        sa.Column("released", _TIME),
    )


def downgrade() -> None:
    for table in (
        "records_holds",
        "records_sources",
        "records_checkpoints",
        "records_head",
        "records_subjects",
        "records_log",
    ):
        op.drop_table(table)
