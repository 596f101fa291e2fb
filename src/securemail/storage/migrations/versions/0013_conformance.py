"""The conformance history: one row per run against a member's gateway, with its report.

The table is securemail.conformance.schema's.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conformance_results",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("member", sa.String(320), nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.Column("tester", sa.String(320), nullable=False),
        sa.Column("started", _TIME, nullable=False),
        sa.Column("finished", _TIME, nullable=False),
        sa.Column("result", sa.String(8), nullable=False),
        sa.Column("failed", sa.Text, nullable=False),
        sa.Column("regressed", sa.Text, nullable=False),
        sa.Column("report", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_conformance_results_member", "conformance_results", ["member", "finished"])


def downgrade() -> None:
    op.drop_index("ix_conformance_results_member", "conformance_results")
    op.drop_table("conformance_results")
