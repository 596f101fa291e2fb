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
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail.cli.queue import open_store
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.toml_table import parse_duration
from securemail.contacts import desk
from securemail.contacts.model import Contact
from securemail.contacts.store import ContactRegister
from securemail.policy.assurance import REQUIREMENTS
from securemail.queue import QueueStore
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
    now = datetime.now(UTC)
    valid_for = parse_duration(valid, "--valid")
    try:
        org = desk.organisation(config, org_id)
        contact, request = desk.ask(
            org, address, purpose, desk.requirements(require), valid_for, now=now
        )
    except desk.ContactError as error:
        raise click.BadParameter(error.detail) from None  # a usage mistake: exit status 2
    with _opened(config_path) as (queue, register):
        register.add(contact)
        queue.enqueue(request, now)
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
    click.echo(json.dumps(desk.as_json(contact, datetime.now(UTC)), indent=2))


@contacts_group.command("revoke")
@CONFIG_OPTION
@click.argument("ident")
def revoke_command(config_path: Path, ident: str) -> None:
    """Stop relying on a verification (the holder is not told)."""
    with _opened(config_path) as (_, register), _refusals():
        desk.revoke(register, ident)
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


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused contact operation as one ``error:`` line and exit status 1."""
    try:
        yield
    except desk.ContactError as error:
        click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
        raise SystemExit(1) from None


def _one(register: ContactRegister, ident: str) -> Contact:
    with _refusals():
        return desk.one(register, ident)
