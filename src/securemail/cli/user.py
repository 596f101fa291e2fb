"""``securemail user``: add and manage the mailbox accounts of a mail service provider node.

Every command opens the node's database directly (running node or not) and calls the
account service; the rules live there, not here.

Security: passwords come from a hidden prompt (asked twice) or the first line of stdin
with ``--password-stdin``, never from the command line (argv is visible to every user of
the host). A new app password or TOTP secret is printed once and kept nowhere else.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import qrcode  # type: ignore[import-untyped]

from securemail.accounts.model import Account
from securemail.accounts.service import AccountService
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.cli.user_dovecot import export_dovecot_command
from securemail.cli.user_identity import identity_group
from securemail.cli.user_node import UserOptions, open_node_accounts
from securemail.cli.user_web import operator_command, records_role_command, token_group
from securemail.deliver.folders import ensure_special_folders
from securemail.node.mailboxes import maildir_for

PASSWORD_STDIN = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)


@click.group("user")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="SECUREMAIL_CONFIG",
    help="The node's configuration file (TOML); or $SECUREMAIL_CONFIG.",
)
@click.option(
    "--breached-passwords",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="SECUREMAIL_BREACHED_PASSWORDS",
    help="A breached-password list (passwords or SHA-1 hex, one a line) new passwords must avoid.",
)
@click.pass_context
def user_group(
    ctx: click.Context, config_path: Path | None, breached_passwords: Path | None
) -> None:
    """Mailbox accounts: add, list, passwords, aliases, TOTP, app passwords, locks, export.

    Give the node's configuration after the command, as everywhere (``securemail user add
    --config node.toml ADDRESS``), before it (``securemail user --config node.toml add
    ADDRESS``) or in $SECUREMAIL_CONFIG.
    """
    ctx.obj = UserOptions(config_path, breached_passwords)


@contextmanager
def _service() -> Iterator[AccountService]:
    with open_node_accounts() as (_, service):
        yield service


@contextmanager
def _reader() -> Iterator[AccountService]:
    """The accounts of a node that has run: read-only commands never create its database."""
    with open_node_accounts(read_only=True) as (_, service):
        yield service


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _show(account: Account) -> None:
    flags = [
        "disabled" if account.disabled else "enabled",
        "totp" if account.totp_enrolled else "",
        "strong-auth" if account.strong_auth_required else "",
    ]
    quota = "no quota" if account.quota is None else f"quota {account.quota}"
    click.echo(f"{account.name}  {' '.join(f for f in flags if f)}  {quota}")


@user_group.command("add")
@click.argument("address")
@click.option("--display-name", default="", help="The holder's name, for people.")
@click.option("--quota", type=click.IntRange(min=1), help="Mailbox limit in octets.")
@PASSWORD_STDIN
def add_command(address: str, display_name: str, quota: int | None, password_stdin: bool) -> None:
    """Add an account named by its primary ADDRESS, with its Maildir and special-use
    folders (Sent, Drafts, Trash, Junk, Archive) when this node stores its mail (made at
    first use otherwise: an IMAP login or the webmail)."""
    password = _password(password_stdin)
    with open_node_accounts() as (config, service):
        account = service.add(address, password, display_name=display_name, quota=quota)
        maildir = maildir_for(config)(account.primary)
        if maildir is not None and maildir.parent.parent.is_dir():  # never make the root
            ensure_special_folders(maildir)
        _show(account)


@user_group.command("list")
@JSON_OPTION
def list_command(as_json: bool) -> None:
    """Every account, one a line (creates nothing: the node's database must exist)."""
    with _reader() as service:
        accounts = service.list()
    if as_json:
        echo_json(accounts)
        return
    for account in accounts:
        _show(account)


@user_group.command("show")
@click.argument("name")
@JSON_OPTION
def show_command(name: str, as_json: bool) -> None:
    """One account: addresses, factors, quota, app passwords."""
    with _reader() as service:
        account = service.get(name)
        if as_json:
            echo_json({"account": account, "app_passwords": service.app_passwords(name)})
            return
        _show(account)
        click.echo(f"  display name: {account.display_name}")
        click.echo(f"  addresses: {', '.join(account.addresses)}")
        click.echo(f"  created: {account.created:%Y-%m-%d %H:%M:%S}Z")
        acknowledged = account.sole_use_acknowledged
        click.echo(f"  sole use acknowledged: {acknowledged or 'no'}")
        identity = account.identity
        verified = "no" if identity is None else f"{identity.level}, {identity.method}"
        click.echo(f"  identity verified: {verified}")
        for app in service.app_passwords(name):
            click.echo(
                f"  app password {app.id}  {app.label}  last used {app.last_used or 'never'}"
            )


@user_group.command("passwd")
@click.argument("name")
@PASSWORD_STDIN
def passwd_command(name: str, password_stdin: bool) -> None:
    """Set NAME's account password."""
    password = _password(password_stdin)
    with _service() as service:
        service.set_password(name, password)
    click.echo(f"password of {name} changed")


@user_group.command("disable")
@click.argument("name")
def disable_command(name: str) -> None:
    """Refuse every login of NAME (mail still arrives)."""
    with _service() as service:
        _show(service.disable(name))


@user_group.command("enable")
@click.argument("name")
def enable_command(name: str) -> None:
    """Allow NAME's logins again."""
    with _service() as service:
        _show(service.enable(name))


@user_group.command("unlock")
@click.argument("name")
def unlock_command(name: str) -> None:
    """Clear the login throttle of NAME."""
    with _service() as service:
        locked = service.unlock(name)
    click.echo(f"{name} {'unlocked' if locked else 'was not locked'}")


@user_group.command("strong-auth")
@click.argument("name")
@click.argument("setting", type=click.Choice(["on", "off"]))
def strong_auth_command(name: str, setting: str) -> None:
    """Require TOTP on the web and app passwords for mail (on), or not (off)."""
    with _service() as service:
        _show(service.set_strong_auth(name, setting == "on"))


@user_group.command("quota")
@click.argument("name")
@click.argument("octets")
def quota_command(name: str, octets: str) -> None:
    """Set NAME's mailbox limit in OCTETS ("none" for no limit)."""
    quota = None if octets.lower() == "none" else _octets(octets)
    with _service() as service:
        _show(service.set_quota(name, quota))


def _octets(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number of octets or none") from None
    if value < 0:
        raise click.BadParameter(f"{text!r}: a quota cannot be negative")
    return value


@user_group.command("time-zone")
@click.argument("name")
@click.argument("zone")
def time_zone_command(name: str, zone: str) -> None:
    """Show NAME's webmail dates in ZONE (an IANA name; "default" for New Zealand time)."""
    with _service() as service:
        account = service.set_time_zone(name, None if zone.lower() == "default" else zone)
    click.echo(f"{account.name} time zone {account.time_zone or 'default (Pacific/Auckland)'}")


@user_group.command("sole-use")
@click.argument("name")
def sole_use_command(name: str) -> None:
    """Record that NAME's holder acknowledged the account is for their sole use."""
    with _service() as service:
        account = service.acknowledge_sole_use(name)
    click.echo(f"{account.name} sole use acknowledged {account.sole_use_acknowledged}")


@user_group.group("alias")
def alias_group() -> None:
    """Further addresses an account receives and may send as."""


@alias_group.command("add")
@click.argument("name")
@click.argument("address")
def alias_add_command(name: str, address: str) -> None:
    """Give NAME the alias ADDRESS."""
    with _service() as service:
        click.echo(", ".join(service.add_alias(name, address).addresses))


@alias_group.command("remove")
@click.argument("name")
@click.argument("address")
def alias_remove_command(name: str, address: str) -> None:
    """Take the alias ADDRESS from NAME."""
    with _service() as service:
        click.echo(", ".join(service.remove_alias(name, address).addresses))


@user_group.group("totp")
def totp_group() -> None:
    """The time-based one-time password second factor."""


@totp_group.command("enrol")
@click.argument("name")
def totp_enrol_command(name: str) -> None:
    """Show a new secret for NAME (QR code and URI); TOTP is on once ``totp confirm`` runs."""
    with _service() as service:
        uri = service.totp_begin(name)
    code = qrcode.QRCode(border=1)
    code.add_data(uri)
    picture = io.StringIO()
    code.print_ascii(out=picture, invert=True)
    click.echo(picture.getvalue())
    click.echo(uri)
    click.echo(f"scan it, then run: securemail user totp confirm {name}", err=True)


@totp_group.command("confirm")
@click.argument("name")
def totp_confirm_command(name: str) -> None:
    """Turn TOTP on for NAME with a current code from the app (asked for)."""
    code = str(click.prompt("Code shown by the app", type=str))
    with _service() as service:
        service.totp_confirm(name, code)
    click.echo(f"TOTP enrolled for {name}")


@totp_group.command("remove")
@click.argument("name")
def totp_remove_command(name: str) -> None:
    """Turn TOTP off for NAME (after checking who asks, out of band)."""
    with _service() as service:
        service.totp_remove(name)
    click.echo(f"TOTP removed for {name}")


@user_group.group("app-password")
def app_password_group() -> None:
    """Generated passwords for mail clients (IMAP, SMTP submission)."""


@app_password_group.command("add")
@click.argument("name")
@click.argument("label")
def app_password_add_command(name: str, label: str) -> None:
    """Create an app password for NAME, labelled LABEL; it is shown only now."""
    with _service() as service:
        ident, secret = service.app_password_add(name, label)
    click.echo(f"app password {ident} for {name} (shown once):")
    click.echo(secret)


@app_password_group.command("list")
@click.argument("name")
@JSON_OPTION
def app_password_list_command(name: str, as_json: bool) -> None:
    """NAME's app passwords: id, label, created, last used."""
    with _reader() as service:
        if as_json:
            echo_json(service.app_passwords(name))
            return
        for app in service.app_passwords(name):
            used = "never" if app.last_used is None else f"{app.last_used:%Y-%m-%d %H:%M}"
            click.echo(f"{app.id}  {app.label}  created {app.created:%Y-%m-%d %H:%M}  used {used}")


@app_password_group.command("revoke")
@click.argument("name")
@click.argument("ident")
def app_password_revoke_command(name: str, ident: str) -> None:
    """Revoke NAME's app password IDENT."""
    with _service() as service:
        service.app_password_revoke(name, ident)
    click.echo(f"app password {ident} revoked")


user_group.add_command(export_dovecot_command)
user_group.add_command(operator_command)
user_group.add_command(records_role_command)
user_group.add_command(token_group)
user_group.add_command(identity_group)


def _config_after_the_command(group: click.Group) -> None:
    """``securemail user add --config F …`` works as ``securemail user --config F add …``
    does: ``--config`` goes after the command here as in every other command."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _config_after_the_command(command)
            continue
        command.params.append(
            click.Option(
                ["--config", "leaf_config"],
                type=click.Path(path_type=Path),
                expose_value=False,
                callback=_take_config,
                help="The node's configuration file (TOML); or $SECUREMAIL_CONFIG.",
            )
        )


def _take_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        options = ctx.find_object(UserOptions)
        ctx.obj = UserOptions(value, None if options is None else options.breached)


_config_after_the_command(user_group)
