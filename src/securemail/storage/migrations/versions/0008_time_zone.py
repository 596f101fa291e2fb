"""An account's own time zone for the dates the webmail shows.

``accounts.time_zone``: an IANA zone name (``Pacific/Chatham``); NULL means the provider's
default, New Zealand time (``Pacific/Auckland``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("time_zone", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("time_zone")
