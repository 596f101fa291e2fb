"""The contact register's table and its one store: every public method is one transaction.

Security: addresses and purposes are untrusted values, stored through bound parameters.
The store never reads the clock.
"""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    MetaData,
    Row,
    String,
    Table,
    Text,
    select,
    update,
)

from securemail.contacts.model import Contact
from securemail.storage.engine import transaction
from securemail.storage.types import UtcDateTime

metadata = MetaData()

contacts = Table(  # migration 0010
    "contacts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("org_id", String(255), nullable=False),
    Column("address", String(320), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("require", Text, nullable=False),  # comma-separated requirement words
    Column("valid_for", BigInteger, nullable=False),  # seconds, from verification
    Column("state", String(16), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("verified_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
    Column("attested", Text),
    Column("note", Text),
    Index("ix_contacts_address", "org_id", "address"),
)


class ContactRegister:
    """The organisations' verified contacts in the node's database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        self._engine.dispose()

    def add(self, contact: Contact) -> None:
        with transaction(self._engine, "add contact", write=True) as conn:
            conn.execute(contacts.insert().values(**_row(contact)))

    def get(self, ident: str) -> Contact | None:
        with transaction(self._engine, "contact", write=False) as conn:
            row = conn.execute(select(contacts).where(contacts.c.id == ident)).first()
            return None if row is None else _contact(row)

    def list(self, org_id: str | None = None) -> builtins.list[Contact]:
        query = select(contacts).order_by(contacts.c.requested_at, contacts.c.id)
        if org_id is not None:
            query = query.where(contacts.c.org_id == org_id)
        with transaction(self._engine, "list contacts", write=False) as conn:
            return [_contact(row) for row in conn.execute(query)]

    def save(self, contact: Contact) -> None:
        """Write ``contact``'s state, times, attestation and note."""
        values = {k: v for k, v in _row(contact).items() if k not in ("id", "org_id")}
        with transaction(self._engine, "save contact", write=True) as conn:
            conn.execute(update(contacts).where(contacts.c.id == contact.id).values(**values))


def _row(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "org_id": contact.org_id,
        "address": contact.address,
        "purpose": contact.purpose,
        "require": ",".join(contact.require),
        "valid_for": int(contact.valid_for.total_seconds()),
        "state": contact.state,
        "requested_at": contact.requested_at,
        "verified_at": contact.verified_at,
        "expires_at": contact.expires_at,
        "attested": contact.attested,
        "note": contact.note,
    }


def _contact(row: Row[Any]) -> Contact:
    return Contact(
        id=row.id,
        org_id=row.org_id,
        address=row.address,
        purpose=row.purpose,
        require=tuple(r for r in row.require.split(",") if r),
        valid_for=timedelta(seconds=row.valid_for),
        state=row.state,
        requested_at=row.requested_at,
        verified_at=row.verified_at,
        expires_at=row.expires_at,
        attested=row.attested,
        note=row.note,
    )
