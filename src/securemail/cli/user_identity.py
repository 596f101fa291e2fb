"""``securemail user identity``: the provider's operator records how a holder was verified.

What is recorded here is the provider's own statement: from then on every message the
holder submits carries it, signed, to the agency (docs/assurance.md). Record only what
the provider actually checked: the level as the provider's assessment names it, the method
in a few words, and the date it was done. ``clear`` withdraws it for later messages.
"""

from __future__ import annotations

from datetime import date

import click

from securemail.cli.user_node import open_node_accounts
from securemail.smime.assurance import IdentityCheck


@click.group("identity")
def identity_group() -> None:
    """How the provider verified an account holder's identity (signed into their mail)."""


@identity_group.command("set")
@click.argument("name")
@click.option("--level", required=True, help="The level the verification met, e.g. as assessed.")
@click.option("--method", required=True, help='How, in a few words ("in person, passport").')
@click.option(
    "--date",
    "verified_on",
    required=True,
    metavar="YYYY-MM-DD",
    help="The day the identity was verified.",
)
def set_command(name: str, level: str, method: str, verified_on: str) -> None:
    """Record that NAME's holder had their identity verified (LEVEL, METHOD, DATE)."""
    with open_node_accounts() as (_, service):
        check = IdentityCheck(level.strip(), " ".join(method.split()), _day(verified_on))
        account = service.set_identity(name, check)
    click.echo(
        f"{account.name} identity verified: {check.level}, {check.method}, {check.verified_on}"
    )


@identity_group.command("clear")
@click.argument("name")
def clear_command(name: str) -> None:
    """Withdraw NAME's identity verification (messages sent from now on carry none)."""
    with open_node_accounts() as (_, service):
        account = service.set_identity(name, None)
    click.echo(f"{account.name} identity verification withdrawn")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--date {text!r} is not a date (YYYY-MM-DD)") from None
