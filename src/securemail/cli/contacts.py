"""``securemail contacts``: an organisation verifies its clients' addresses, and keeps them.

``verify`` records a pending verification and queues a SecureMail message asking the
holder to confirm; the holder answers from that address (``Confirm <id>``) after signing in
as strongly as required, and the node takes the answer with the provider's signed
assertion as the attestation (docs/assurance.md, "Address verification"). ``list``,
``show`` and ``revoke`` read and end the register; a verified contact past its expiry
reads ``expired``.

Exit status: 0 done, 1 refused (``error: <reason-code>: <detail>``), 2 usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path

import click

from securemail.cli.queue import open_store
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.node import NodeConfig, Organisation
from securemail.config.toml_table import parse_duration
from securemail.contacts.model import Contact, new_id
from securemail.contacts.store import ContactRegister
from securemail.policy.assurance import REQUIREMENTS
from securemail.queue import Direction, NewMessage, QueueStore
from securemail.storage.engine import connect


@click.group("contacts")
def contacts_group() -> None:
    """Verified client addresses: ask, list, show, revoke (docs/assurance.md)."""


@contacts_group.command("verify")
@CONFIG_OPTION
@click.option("--address", required=True, help="The client's SecureMail address.")
@click.option("--purpose", required=True, help="What the address will be used for.")
@click.option("--require", default="", help=f"Comma-separated: {', '.join(REQUIREMENTS)}.")
@click.option("--valid", default="365d", show_default=True, help="How long a verification holds.")
@click.option("--org", "org_id", help="The asking organisation (default: the node's first).")
def verify_command(
    config_path: Path, address: str, purpose: str, require: str, valid: str, org_id: str | None
) -> None:
    """Ask ADDRESS's holder to confirm it; print the verification id."""
    config = read_config(config_path)
    org = _org(config, org_id)
    wanted = tuple(r.strip() for r in require.split(",") if r.strip())
    unknown = [r for r in wanted if r not in REQUIREMENTS]
    if unknown or "@" not in address or not purpose.strip() or not purpose.isprintable():
        raise click.BadParameter(
            f"requirements among {', '.join(REQUIREMENTS)}; an address; a purpose"
        )
    now = datetime.now(UTC)
    contact = Contact(
        new_id(),
        org.org_id,
        address.strip().lower(),
        " ".join(purpose.split()),
        wanted,
        parse_duration(valid, "--valid"),
        "pending",
        now,
    )
    with _opened(config_path) as (queue, register):
        register.add(contact)
        queue.enqueue(_request(org, contact, now), now)
    click.echo(contact.id)


@contacts_group.command("list")
@CONFIG_OPTION
def list_command(config_path: Path) -> None:
    """Every verification, oldest first: id, status, address, purpose, expiry."""
    now = datetime.now(UTC)
    with _opened(config_path) as (_, register):
        found = register.list()
    for contact in found:
        expires = "" if contact.expires_at is None else f" until {contact.expires_at:%Y-%m-%d}"
        click.echo(
            f"{contact.id}  {contact.status(now):<9} {contact.address}  {contact.purpose}{expires}"
        )


@contacts_group.command("show")
@CONFIG_OPTION
@click.argument("ident")
def show_command(config_path: Path, ident: str) -> None:
    """One verification as JSON: what was asked, what was attested, and when."""
    with _opened(config_path) as (_, register):
        contact = _one(register, ident)
    click.echo(json.dumps(_as_json(contact, datetime.now(UTC)), indent=2))


@contacts_group.command("revoke")
@CONFIG_OPTION
@click.argument("ident")
def revoke_command(config_path: Path, ident: str) -> None:
    """Stop relying on a verification (the holder is not told)."""
    with _opened(config_path) as (_, register):
        contact = _one(register, ident)
        register.save(replace(contact, state="revoked", note="revoked by the organisation"))
    click.echo(f"{ident}: revoked")


@contextmanager
def _opened(config_path: Path) -> Iterator[tuple[QueueStore, ContactRegister]]:
    """The node's queue (which must exist, and is migrated) and its contact register."""
    with open_store(config_path) as queue:
        register = ContactRegister(connect(read_config(config_path).database))
        try:
            yield queue, register
        finally:
            register.close()


def _one(register: ContactRegister, ident: str) -> Contact:
    contact = register.get(ident)
    if contact is None:
        click.echo(f"error: no-such-contact: no verification {ident}", err=True)
        raise SystemExit(1)
    return contact


def _org(config: NodeConfig, org_id: str | None) -> Organisation:
    for org in config.organisations:
        if org_id is None or org.org_id == org_id:
            return org
    raise click.BadParameter(f"no organisation {org_id} on this node", param_hint="--org")


def _request(org: Organisation, contact: Contact, now: datetime) -> NewMessage:
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
        Direction.OUTBOUND, org.org_id, org.contacts_address, (contact.address,), body, "cli"
    )


def _as_json(contact: Contact, now: datetime) -> dict[str, object]:
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
