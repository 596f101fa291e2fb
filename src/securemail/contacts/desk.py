"""The contact register's operations, one code path for the CLI, the console and the API.

Asking (validate, record pending, build the request message), revoking, one page of the
register with an address filter, and the JSON form of a contact. The callers open the
register and queue their own way (the CLI synchronously, the web off the event loop).

Security: address, purpose and requirements come from an operator's form, flag or JSON:
they are checked here (an address, printable purpose, known requirement words) before
they are stored or put in a message header; the register binds them as parameters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import format_datetime, make_msgid
from enum import StrEnum

from securemail.config.node import NodeConfig, Organisation
from securemail.contacts.model import Contact, new_id
from securemail.contacts.store import ContactRegister
from securemail.errors import SecureMailError
from securemail.policy.assurance import REQUIREMENTS
from securemail.queue import Direction, NewMessage

MAX_PAGE = 500


class ContactReason(StrEnum):
    NOT_FOUND = "no-such-contact"
    BAD_REQUEST = "bad-contact-request"
    NO_ORGANISATION = "no-such-organisation"


class ContactError(SecureMailError[ContactReason]):
    """A contact operation refused: unknown id or organisation, or a bad request."""


@dataclass(frozen=True)
class ContactDesk:
    """What the web needs for contacts: the register and how a request enters the queue."""

    register: ContactRegister
    enqueue: Callable[[NewMessage], Awaitable[str]]


@dataclass(frozen=True)
class ContactPage:
    """One page of the register, newest first, and how many match in all."""

    entries: tuple[Contact, ...]
    offset: int
    limit: int
    total: int

    @property
    def more(self) -> bool:
        return self.offset + len(self.entries) < self.total

    @property
    def next_offset(self) -> int | None:
        return self.offset + len(self.entries) if self.more else None


def organisation(config: NodeConfig, org_id: str | None) -> Organisation:
    """The asking organisation: ``org_id``'s, or the node's first."""
    for org in config.organisations:
        if org_id is None or org.org_id == org_id:
            return org
    raise ContactError(ContactReason.NO_ORGANISATION, f"no organisation {org_id} on this node")


def requirements(text: str) -> tuple[str, ...]:
    """The requirement words of a comma-separated ``text``; unknown words are refused."""
    wanted = tuple(r.strip() for r in text.split(",") if r.strip())
    unknown = [r for r in wanted if r not in REQUIREMENTS]
    if unknown:
        detail = f"unknown requirement {', '.join(unknown)}; known: {', '.join(REQUIREMENTS)}"
        raise ContactError(ContactReason.BAD_REQUEST, detail)
    return wanted


def ask(
    org: Organisation,
    address: str,
    purpose: str,
    require: tuple[str, ...],
    valid_for: timedelta,
    *,
    now: datetime,
    client: str = "cli",
) -> tuple[Contact, NewMessage]:
    """A pending verification of ``address`` and the message that asks its holder;
    ``client`` names the face that asked (``cli``, ``console``, ``api``) in the queue."""
    address = address.strip().lower()
    local, _, domain = address.partition("@")
    if not local or "." not in domain or not address.isprintable() or " " in address:
        raise ContactError(ContactReason.BAD_REQUEST, f"not an address: {address!r}")
    if not purpose.strip() or not purpose.isprintable() or len(purpose) > 500:
        raise ContactError(ContactReason.BAD_REQUEST, "a purpose of printable words is needed")
    if valid_for <= timedelta(0):
        raise ContactError(ContactReason.BAD_REQUEST, "a verification must hold for some time")
    for word in require:
        requirements(word)
    contact = Contact(
        new_id(),
        org.org_id,
        address,
        " ".join(purpose.split()),
        require,
        valid_for,
        "pending",
        now,
    )
    return contact, request_message(org, contact, now, client)


def request_message(
    org: Organisation, contact: Contact, now: datetime, client: str = "cli"
) -> NewMessage:
    """The SecureMail message that asks the holder to confirm (signed by the organisation)."""
    needs = ", ".join(contact.require) or "nothing more"
    lines = [
        f"From: {org.contacts_address}",
        f"To: {contact.address}",
        f"Subject: Please confirm your address for {contact.purpose} [{contact.id}]",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=org.domains[0])}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"{org.org_id} asks you to confirm {contact.address} for: {contact.purpose}.",
        f"It requires: {needs}.",
        "",
        "To confirm, sign in to your SecureMail mailbox as required and send a message",
        f"to {org.contacts_address} with the subject: Confirm {contact.id}",
        f"To withdraw later, send the subject: Withdraw {contact.id}",
    ]
    body = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return NewMessage(
        Direction.OUTBOUND, org.org_id, org.contacts_address, (contact.address,), body, client
    )


def one(register: ContactRegister, ident: str) -> Contact:
    contact = register.get(ident)
    if contact is None:
        raise ContactError(ContactReason.NOT_FOUND, f"no verification {ident}")
    return contact


def revoke(register: ContactRegister, ident: str) -> Contact:
    """Stop relying on verification ``ident`` (the holder is not told); the saved contact."""
    contact = replace(one(register, ident), state="revoked", note="revoked by the organisation")
    register.save(contact)
    return contact


def page(register: ContactRegister, address: str, offset: int, limit: int) -> ContactPage:
    """Contacts whose address contains ``address`` (all if empty), newest first."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ContactError(ContactReason.BAD_REQUEST, f"limit 1..{MAX_PAGE}, offset from 0")
    entries, total = register.page(address.strip().lower(), offset, limit)
    return ContactPage(tuple(entries), offset, limit, total)


def as_json(contact: Contact, now: datetime) -> dict[str, object]:
    """``contact`` as plain JSON values, with its status as of ``now``."""
    when = {
        k: None if v is None else v.isoformat()
        for k, v in (
            ("requested_at", contact.requested_at),
            ("verified_at", contact.verified_at),
            ("expires_at", contact.expires_at),
        )
    }
    return {
        "id": contact.id,
        "org_id": contact.org_id,
        "address": contact.address,
        "purpose": contact.purpose,
        "require": list(contact.require),
        "status": contact.status(now),
        "attested": contact.attested,
        "note": contact.note,
        **when,
    }
