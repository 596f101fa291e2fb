"""``securemail user operator`` and ``securemail user token``: the web's roles and API tokens.

Like every ``securemail user`` command these open the node's database directly and call
the service (securemail.access.tokens), which checks and logs every change.

Security: a new API token is printed once and kept nowhere but as its SHA-256.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from securemail.access.model import Scope
from securemail.access.store import WebStore
from securemail.access.tokens import WebAccess
from securemail.accounts.events import ACCOUNTS_LOG, AccountEvents
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.cli.records import operator as cli_operator
from securemail.cli.user_node import open_node_accounts
from securemail.storage.engine import connect


@contextmanager
def _access(*, read_only: bool = False) -> Iterator[WebAccess]:
    with open_node_accounts(read_only=read_only) as (config, _):
        engine = connect(config.database)  # open_node_accounts has migrated it
        try:
            events = AccountEvents(config.data_dir / ACCOUNTS_LOG)
            yield WebAccess(WebStore(engine), events, lambda: datetime.now(UTC))
        finally:
            engine.dispose()


@click.command("operator")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
def operator_command(name: str, state: str) -> None:
    """Let NAME use the operator console and operator API tokens (on), or no longer (off)."""
    with _access() as access:
        access.set_operator(name, state == "on")
    click.echo(f"{name.strip().lower()} operator {state}")


@click.command("records-role")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
def records_role_command(name: str, state: str) -> None:
    """Let NAME, an operator, make Privacy Act and OIA exports in the console (on), or no
    longer (off). Recorded in the records log."""
    with _access() as access:
        access.set_records_role(name, state == "on", by=cli_operator())
    click.echo(f"{name.strip().lower()} records-role {state}")


@click.group("token")
def token_group() -> None:
    """API tokens for business applications (the JSON API under /api/v1)."""


@token_group.command("add")
@click.argument("name")
@click.argument("label")
@click.option(
    "--scope",
    type=click.Choice([s.value for s in Scope if s is not Scope.RECORDS]),
    default=Scope.MAILBOX.value,
    show_default=True,
    help="mailbox: the account's own mail; operator: the node (NAME must be an operator); "
    "application: send and track structured documents (docs/structured.md).",
)
def token_add_command(name: str, label: str, scope: str) -> None:
    """Create an API token for NAME, labelled LABEL; it is shown only now."""
    with _access() as access:
        ident, token = access.token_add(name, label, Scope(scope))
    click.echo(f"API token {ident} ({scope}) for {name.strip().lower()} (shown once):")
    click.echo(token)


@token_group.command("list")
@click.argument("name")
@JSON_OPTION
def token_list_command(name: str, as_json: bool) -> None:
    """NAME's API tokens: id, scope, label, created, last used."""
    with _access(read_only=True) as access:
        if as_json:
            echo_json(access.tokens(name))
            return
        for token in access.tokens(name):
            used = "never" if token.last_used is None else f"{token.last_used:%Y-%m-%d %H:%M}"
            click.echo(
                f"{token.id}  {token.scope}  {token.label}  "
                f"created {token.created:%Y-%m-%d %H:%M}  used {used}"
            )


@token_group.command("revoke")
@click.argument("name")
@click.argument("ident")
def token_revoke_command(name: str, ident: str) -> None:
    """Revoke NAME's API token IDENT."""
    with _access() as access:
        access.token_revoke(name, ident)
    click.echo(f"API token {ident} revoked")
