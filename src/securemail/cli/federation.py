"""``securemail federation``: the federation operator's commands over a federation directory.

Exit status: 0 done, 1 refused (``error: <reason-code>: <detail>`` on stderr, nothing
written), 2 usage error. The layout of the directory is described in
:mod:`securemail.federation.store`.

Security: the passphrases of the federation keys and of a new member's node keys come from
an environment variable or a file, never from the command line, and an empty one is
refused (it would leave keys unencrypted). Certificate requests are untrusted input and are
checked by :func:`securemail.federation.issuing.requested_key`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from cryptography import x509

from securemail.cli import files
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.directory import Member
from securemail.directory.model import CAPABILITIES, ROLES
from securemail.federation import FederationError
from securemail.federation import operator as ops
from securemail.federation.issuing import REVOCATION_REASONS
from securemail.federation.node import NodeTarget
from securemail.federation.store import Store, serial_hex

F = TypeVar("F", bound=Callable[..., Any])
FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
FED = click.option(
    "--dir",
    "fed",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The federation directory.",
)
DAY = click.DateTime(["%Y-%m-%d"])


@click.group()
def federation() -> None:
    """Run a federation: root CA, member certificates, revocation, the signed directory."""


def _refusals(func: F) -> F:
    """Report a FederationError as ``error: <reason-code>: <detail>`` and exit 1."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FederationError as error:
            click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
            sys.exit(1)

    return cast(F, run)


def _node_passphrase_options(func: F) -> F:
    """Add --node-passphrase-env and --node-passphrase-file to a command."""
    func = click.option(
        "--node-passphrase-file",
        type=FILE,
        help="File whose first line is the passphrase for the member's new keys.",
    )(func)
    return click.option(
        "--node-passphrase-env",
        metavar="VAR",
        help="Environment variable holding the passphrase for the member's new keys.",
    )(func)


def _passphrase(env: str | None, file: Path | None, option: str = "--passphrase") -> bytes:
    """A required, non-empty passphrase from ``<option>-env`` or ``<option>-file``."""
    if env and file:
        raise click.UsageError(f"give {option}-env or {option}-file, not both")
    value = files.read_passphrase(env, file)
    if value is None:
        raise click.UsageError(f"the keys are encrypted: give {option}-env VAR or {option}-file F")
    if not value:
        raise click.UsageError(f"the passphrase from {option}-{'env' if env else 'file'} is empty")
    return value


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


@federation.command("init")
@FED
@click.option("--name", required=True, help="The federation's name (also the root CA's).")
@files.passphrase_options
@_refusals
def init_command(
    fed: Path, name: str, passphrase_env: str | None, passphrase_file: Path | None
) -> None:
    """Found a federation: root CA, operator identity, and version 1 of the directory."""
    if not name.strip() or len(name) > ops.MAX_NAME:
        raise click.BadParameter(f"1 to {ops.MAX_NAME} characters", param_hint="--name")
    passphrase = _passphrase(passphrase_env, passphrase_file)
    version = ops.init_federation(fed, name, passphrase, _now(), timedelta(days=7))
    click.echo(f"federation {name!r} founded in {fed}")
    click.echo(f"published serial 1 ({version.digest}), no members yet")
    click.echo(f"trust anchor for gateways: {fed / 'ca' / 'root.pem'}")


@federation.command("add-member")
@FED
@click.option("--org-id", required=True, help="Lower-case letters, digits and hyphens.")
@click.option("--name", required=True, help="The organisation's name.")
@click.option("--domain", "domains", multiple=True, required=True, help="Mail domain; repeat.")
@click.option("--endpoint", "endpoints", multiple=True, required=True, help="HOST:PORT; repeat.")
@click.option("--region", required=True, help="ISO 3166 country code of the gateway: NZ.")
@click.option("--contact-email", required=True, help="A role address, e.g. securemail@D.")
@click.option("--contact-phone", required=True, help="International: +64 4 000 0000.")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES))
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    type=click.Choice(CAPABILITIES),
    default=ops.DEFAULT_CAPABILITIES,
    show_default=True,
)
@click.option("--csr", type=FILE, help="The member's CSR for its S/MIME key (PEM or DER).")
@click.option("--tls-csr", type=FILE, help="The member's CSR for its TLS key.")
@click.option(
    "--node-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a ready node directory here (needed when keys are made here).",
)
@files.passphrase_options
@_node_passphrase_options
@_refusals
def add_member_command(
    fed: Path,
    org_id: str,
    name: str,
    domains: tuple[str, ...],
    endpoints: tuple[str, ...],
    region: str,
    contact_email: str,
    contact_phone: str,
    roles: tuple[str, ...],
    capabilities: tuple[str, ...],
    csr: Path | None,
    tls_csr: Path | None,
    node_dir: Path | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
    node_passphrase_env: str | None,
    node_passphrase_file: Path | None,
) -> None:
    """Admit a member: issue its signing, encryption and TLS certificates (not published)."""
    if (csr is None or tls_csr is None) and node_dir is None:
        raise click.UsageError(
            "without --csr and --tls-csr the keys are made here: give --node-dir DIR for them"
        )
    node = None
    if node_dir is not None:
        keys_made_here = csr is None or tls_csr is None
        secret = (
            _passphrase(node_passphrase_env, node_passphrase_file, "--node-passphrase")
            if keys_made_here
            else b""
        )
        node = NodeTarget(node_dir, secret)
    passphrase = _passphrase(passphrase_env, passphrase_file)
    application = ops.Application(
        org_id=org_id,
        name=name,
        domains=domains,
        endpoints=endpoints,
        region=region,
        contact_email=contact_email,
        contact_phone=contact_phone,
        roles=roles,
        capabilities=capabilities,
        csr=_read(csr),
        tls_csr=_read(tls_csr),
    )
    admission = ops.add_member(Store(fed), application, passphrase, _now(), node)
    member = admission.member
    click.echo(f"member {member.org_id} admitted ({', '.join(member.domains)})")
    _certificate_line("signing", member.signing.current)
    _certificate_line("encryption", member.encryption.current)
    _certificate_line("tls", admission.tls_certificate)
    if node is not None:
        made = ", ".join(sorted(admission.generated)) or "none"
        click.echo(f"node directory {node.path} (keys made here: {made})")
    click.echo(f"not yet published: run `securemail federation publish --dir {fed}`")


def _certificate_line(use: str, cert: x509.Certificate) -> None:
    expiry = cert.not_valid_after_utc.date().isoformat()
    click.echo(f"  {use:<11} serial {serial_hex(cert.serial_number)}  expires {expiry}")


@federation.command("update-member")
@FED
@click.option("--org-id", required=True)
@click.option("--name")
@click.option("--domain", "domains", multiple=True, help="Replaces the domains; repeat.")
@click.option("--endpoint", "endpoints", multiple=True, help="Replaces the endpoints; repeat.")
@click.option("--contact-email")
@click.option("--contact-phone")
@click.option("--capability", "capabilities", multiple=True, type=click.Choice(CAPABILITIES))
@click.option("--accredited-on", type=DAY, help="Date of accreditation (YYYY-MM-DD).")
@click.option("--conformance-tested", type=DAY, help="Date of the last conformance test.")
@click.option("--next-signing-csr", type=FILE, help="CSR of the member's next signing key.")
@click.option("--next-encryption-csr", type=FILE, help="CSR of the next encryption key.")
@click.option("--promote-next", is_flag=True, help="Make the next certificates current.")
@click.option(
    "--upstream",
    multiple=True,
    help="An upstream queue HOST:PORT,PIN,OPERATOR (in NZ), tried after the endpoints;"
    " replaces the list; repeat.",
)
@click.option("--no-upstream", is_flag=True, help="Remove every upstream queue.")
@files.passphrase_options
@_refusals
def update_member_command(
    fed: Path,
    org_id: str,
    name: str | None,
    domains: tuple[str, ...],
    endpoints: tuple[str, ...],
    contact_email: str | None,
    contact_phone: str | None,
    capabilities: tuple[str, ...],
    accredited_on: datetime | None,
    conformance_tested: datetime | None,
    next_signing_csr: Path | None,
    next_encryption_csr: Path | None,
    promote_next: bool,
    upstream: tuple[str, ...],
    no_upstream: bool,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Change a member's record; issue next certificates for a key rollover, or promote them."""
    changes = ops.Changes(
        name=name,
        domains=domains,
        endpoints=endpoints,
        contact_email=contact_email,
        contact_phone=contact_phone,
        capabilities=capabilities,
        accredited_on=None if accredited_on is None else accredited_on.date(),
        conformance_tested=None if conformance_tested is None else conformance_tested.date(),
        next_signing_csr=_read(next_signing_csr),
        next_encryption_csr=_read(next_encryption_csr),
        promote_next=promote_next,
        upstream=upstream,
        no_upstream=no_upstream,
    )
    if changes == ops.Changes():
        raise click.UsageError("nothing to change: give at least one option")
    if promote_next and changes.issues:
        raise click.UsageError("--promote-next and --next-*-csr go in separate runs")
    passphrase = _passphrase(passphrase_env, passphrase_file) if changes.issues else None
    member = ops.update_member(Store(fed), org_id, changes, passphrase, _now())
    click.echo(f"member {member.org_id} updated")
    for use, pair in (("signing", member.signing), ("encryption", member.encryption)):
        _certificate_line(use, pair.current)
        if pair.next is not None:
            _certificate_line("  next", pair.next)
    for queue in member.upstream:
        click.echo(f"  upstream    {queue.host}:{queue.port} run by {queue.operator}")
    if domains:
        click.echo(
            "the current certificates name the old domains: issue next ones and promote them"
        )
    click.echo(f"not yet published: run `securemail federation publish --dir {fed}`")


@federation.command("suspend-member")
@FED
@click.option("--org-id", required=True)
@click.option("--reason", default="", help="Why (kept in the federation's journal).")
@_refusals
def suspend_member_command(fed: Path, org_id: str, reason: str) -> None:
    """Mark a member suspended: gateways stop sending to it and accepting from it."""
    ops.change_status(Store(fed), org_id, "suspended", reason, _now())
    click.echo(f"member {org_id} suspended; publish to make it known")


@federation.command("reinstate-member")
@FED
@click.option("--org-id", required=True)
@click.option("--reason", default="", help="Why (kept in the federation's journal).")
@_refusals
def reinstate_member_command(fed: Path, org_id: str, reason: str) -> None:
    """Make a suspended member active again (its current certificates must not be revoked)."""
    ops.change_status(Store(fed), org_id, "active", reason, _now())
    click.echo(f"member {org_id} reinstated; publish to make it known")


def _serial(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().lower().replace(":", "").removeprefix("0x")
    try:
        return int(text, 16)
    except ValueError:
        raise click.BadParameter(f"not a hexadecimal serial: {value!r}") from None


@federation.command("revoke")
@FED
@click.option("--org-id", help="Revoke every certificate of this member and suspend it.")
@click.option("--serial", callback=_serial, help="Revoke this certificate (hexadecimal).")
@click.option(
    "--reason",
    type=click.Choice(list(REVOCATION_REASONS)),
    default="unspecified",
    show_default=True,
)
@files.passphrase_options
@_refusals
def revoke_command(
    fed: Path,
    org_id: str | None,
    serial: int | None,
    reason: str,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Revoke certificates and re-issue the CRL (FED/crl.pem); publish to distribute it."""
    if (org_id is None) == (serial is None):
        raise click.UsageError("give --org-id or --serial (one of them)")
    passphrase = _passphrase(passphrase_env, passphrase_file)
    store = Store(fed)
    added = ops.revoke(
        store, org_id=org_id, serial=serial, reason=reason, passphrase=passphrase, now=_now()
    )
    for revocation in added:
        click.echo(f"revoked {serial_hex(revocation.serial)} ({revocation.org_id or 'operator'})")
    if org_id is not None:
        click.echo(f"member {org_id} suspended")
    click.echo(f"CRL re-issued: {fed / 'crl.pem'}; publish to distribute it")


@federation.command("publish")
@FED
@click.option(
    "--validity-days",
    type=click.IntRange(1, 31),
    default=7,
    show_default=True,
    help="Days until gateways must have fetched the next version.",
)
@files.passphrase_options
@_refusals
def publish_command(
    fed: Path, validity_days: int, passphrase_env: str | None, passphrase_file: Path | None
) -> None:
    """Sign the next directory version with the current CRL, check it, and publish it."""
    passphrase = _passphrase(passphrase_env, passphrase_file)
    version, warnings = ops.publish(Store(fed), passphrase, _now(), timedelta(days=validity_days))
    directory = version.directory
    active = sum(1 for m in directory.members if m.active)
    click.echo(f"published serial {directory.serial}")
    click.echo(f"digest {version.digest}")
    click.echo(f"members {len(directory.members)} ({active} active)")
    click.echo(f"next update by {directory.next_update.isoformat()}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@federation.command("list")
@FED
@JSON_OPTION
@_refusals
def list_command(fed: Path, as_json: bool) -> None:
    """List the members: org id, name, domains, status, roles, earliest certificate expiry."""
    store = Store(fed)
    store.require()
    members = store.members()
    if as_json:
        echo_json([_member_json(m) for m in members])
        return
    if not members:
        click.echo("no members")
        return
    rows = [("ORG-ID", "NAME", "DOMAINS", "STATUS", "ROLES", "EXPIRES")]
    rows += [_row(m) for m in members]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


def _member_json(member: Member) -> dict[str, object]:
    expiry = min(
        member.signing.current.not_valid_after_utc, member.encryption.current.not_valid_after_utc
    )
    rollover = member.signing.next is not None or member.encryption.next is not None
    return {
        "org_id": member.org_id,
        "name": member.name,
        "domains": list(member.domains),
        "status": member.status,
        "roles": list(member.roles),
        "expires": expiry.isoformat(),
        "next_issued": rollover,
    }


def _row(member: Member) -> tuple[str, str, str, str, str, str]:
    expiry = min(
        member.signing.current.not_valid_after_utc, member.encryption.current.not_valid_after_utc
    )
    rollover = " (next issued)" if member.signing.next or member.encryption.next else ""
    return (
        member.org_id,
        member.name,
        ",".join(member.domains),
        member.status,
        ",".join(member.roles),
        expiry.date().isoformat() + rollover,
    )
