"""The web: the operator role on accounts, browser sessions and API tokens.

The tables are securemail.access.schema's; they live in the node database next to the
accounts they belong to (deleting an account deletes its sessions and tokens).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_NAME = sa.String(320)


def _owner() -> sa.Column[str]:
    return sa.Column(
        "account", _NAME, sa.ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("operator", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        _owner(),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16)),
        sa.Column("pending", sa.LargeBinary),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("last_seen", _TIME, nullable=False),
    )
    op.create_index("ix_web_sessions_account", "web_sessions", ["account"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
        _owner(),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("last_used", _TIME),
    )
    op.create_index("ix_api_tokens_hash", "api_tokens", ["hash"], unique=True)
    op.create_index("ix_api_tokens_account", "api_tokens", ["account"])


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("web_sessions")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("operator")
