"""``securemail directory``: fetch, verify and show the federation's signed member directory.

Exit status: 0 done, 1 refused (``error: <reason-code>: <detail>`` on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from securemail.cli import files
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.directory import Directory, DirectoryError, digest, parse, verify_document
from securemail.directory.fetch import DEFAULT_TIMEOUT, FetchError, Source
from securemail.directory.model import KeyPair, Member
from securemail.directory.store import DOCUMENT, DirectoryStore
from securemail.smime import SmimeError

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
STATE = click.Path(file_okay=False, path_type=Path)


@click.group()
def directory() -> None:
    """Fetch, verify and show the federation's signed member directory."""


def _source_options(func: Any) -> Any:
    func = click.option(
        "--at",
        type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
        help="Verify as of this UTC time (default: now).",
    )(func)
    func = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Seconds allowed for each HTTPS download.",
    )(func)
    func = click.option(
        "--ca-file", type=FILE, help="CA certificate(s) for the HTTPS server (default: system)."
    )(func)
    return click.option(
        "--federation", metavar="NAME", help="Refuse a directory of any other federation."
    )(func)


ANCHORS = click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=FILE,
    help="Federation root certificate(s) (PEM) the operator's signature must chain to "
    "(needed by fetch and verify; show without it only parses).",
)


def _now(at: datetime | None) -> datetime:
    return datetime.now(UTC) if at is None else at.replace(tzinfo=at.tzinfo or UTC)


def _refuse(error: DirectoryError | FetchError) -> None:
    click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
    sys.exit(1)


def _anchors(paths: Sequence[Path]) -> list[x509.Certificate]:
    try:
        return files.load_certs(tuple(paths))
    except SmimeError as error:
        raise click.BadParameter(error.detail, param_hint="--anchor") from None


def _warn_if_stale(directory: Directory, now: datetime) -> None:
    if directory.is_stale(now):
        click.echo(
            f"warning: serial {directory.serial} is past its next update "
            f"({_time(directory.next_update)})",
            err=True,
        )


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@directory.command("fetch")
@click.option("--source", required=True, metavar="PATH|URL", help="Document (signature at +.p7s).")
@ANCHORS
@click.option("--state", type=STATE, required=True, help="The gateway's state directory.")
@_source_options
@JSON_OPTION
def fetch_command(
    source: str,
    anchors: tuple[Path, ...],
    state: Path,
    federation: str | None,
    ca_file: Path | None,
    timeout: float,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Fetch the directory, verify it, and accept it into STATE if it succeeds the last one."""
    if not anchors:
        raise click.UsageError("give at least one --anchor")
    now = _now(at)
    store = DirectoryStore(state, _anchors(anchors), federation=federation)
    try:
        fetched = Source(source, ca_file=ca_file, timeout=timeout).fetch()
        stored, changed = store.accept(fetched, now)
    except (DirectoryError, FetchError) as error:
        _refuse(error)
        return
    except OSError as exc:
        raise click.ClickException(f"state {state}: {exc}") from None
    serial = stored.directory.serial
    if as_json:
        echo_json({"serial": serial, "digest": stored.digest, "accepted": changed})
    elif changed:
        click.echo(f"accepted serial {serial} (digest {stored.digest})")
    else:
        click.echo(f"unchanged (serial {serial})")
    _warn_if_stale(stored.directory, now)


@directory.command("verify")
@click.option("--source", required=True, metavar="PATH|URL", help="Document (signature at +.p7s).")
@ANCHORS
@_source_options
@JSON_OPTION
def verify_command(
    source: str,
    anchors: tuple[Path, ...],
    federation: str | None,
    ca_file: Path | None,
    timeout: float,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Fetch and verify the directory (no state): print its serial, federation and dates."""
    if not anchors:
        raise click.UsageError("give at least one --anchor")
    now = _now(at)
    try:
        fetched = Source(source, ca_file=ca_file, timeout=timeout).fetch()
        verified = verify_document(
            fetched.document,
            fetched.signature,
            anchors=_anchors(anchors),
            now=now,
            federation=federation,
        )
    except (DirectoryError, FetchError) as error:
        _refuse(error)
        return
    summary = {
        "serial": verified.serial,
        "federation": verified.federation,
        "members": len(verified.members),
        "issued": verified.issued_at,
        "next_update": verified.next_update,
        "digest": digest(fetched.document),
        "stale": verified.is_stale(now),
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(f"serial: {verified.serial}")
    click.echo(f"federation: {verified.federation}")
    click.echo(f"members: {len(verified.members)}")
    click.echo(f"issued: {_time(verified.issued_at)}")
    click.echo(f"next update: {_time(verified.next_update)}")
    click.echo(f"digest: {digest(fetched.document)}")
    _warn_if_stale(verified, now)


@directory.command("show")
@click.option("--state", type=STATE, help="Show the last good version in this state directory.")
@click.option("--source", metavar="PATH|URL", help="Show the directory at this source.")
@ANCHORS
@click.option("--json", "as_json", is_flag=True, help="Print the members as JSON.")
@_source_options
def show_command(
    state: Path | None,
    source: str | None,
    anchors: tuple[Path, ...],
    as_json: bool,
    federation: str | None,
    ca_file: Path | None,
    timeout: float,
    at: datetime | None,
) -> None:
    """List the members; verified when --anchor is given, else marked as unverified."""
    if state is not None and source is not None:
        raise click.UsageError("give --state or --source, not both")
    now = _now(at)
    certs = _anchors(anchors) if anchors else None
    try:
        if state is not None:
            shown = _from_state(state, certs, federation, now)
        elif source is not None:
            location = Source(source, ca_file=ca_file, timeout=timeout)
            shown = _from_source(location, certs, federation, now)
        else:
            raise click.UsageError("give --state or --source")
    except (DirectoryError, FetchError) as error:
        _refuse(error)
        return
    if shown is None:
        click.echo(f"error: no-directory: nothing has been accepted in {state} yet", err=True)
        sys.exit(1)
    if certs is None:
        click.echo("warning: not verified (give --anchor to check the signature)", err=True)
    _warn_if_stale(shown, now)
    if as_json:
        click.echo(json.dumps([m.to_json() for m in shown.members], indent=2))
    else:
        click.echo(f"{shown.federation}, serial {shown.serial}")
        click.echo(format_table(member_rows(shown.members)), nl=False)


def _from_state(
    state: Path, anchors: list[x509.Certificate] | None, federation: str | None, now: datetime
) -> Directory | None:
    """The last good version in ``state``: verified again, or only parsed without anchors."""
    if anchors is not None:
        stored = DirectoryStore(state, anchors, federation=federation).load(now)
        return None if stored is None else stored.directory
    path = state / DOCUMENT
    return parse(path.read_bytes()) if path.exists() else None


def _from_source(
    source: Source, anchors: list[x509.Certificate] | None, federation: str | None, now: datetime
) -> Directory:
    """The directory at ``source``: verified, or only parsed without anchors."""
    fetched = source.fetch()
    if anchors is None:
        return parse(fetched.document)
    return verify_document(
        fetched.document, fetched.signature, anchors=anchors, now=now, federation=federation
    )


HEADINGS = ("org id", "name", "domains", "region", "roles", "status", "endpoints", "enc. expires")


def member_rows(members: Sequence[Member]) -> list[tuple[str, ...]]:
    """One row per member, sorted by org id, with the columns of :data:`HEADINGS`."""
    return [
        (
            m.org_id,
            m.name,
            ",".join(m.domains),
            m.region,
            ",".join(m.roles),
            m.status,
            ",".join(f"{e.host}:{e.port}" for e in m.endpoints),
            _expiry(m.encryption),
        )
        for m in sorted(members, key=lambda m: m.org_id)
    ]


def _expiry(pair: KeyPair) -> str:
    current = pair.current.not_valid_after_utc.date().isoformat()
    if pair.next is None:
        return current
    return f"{current} (next {pair.next.not_valid_after_utc.date().isoformat()})"


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows under :data:`HEADINGS`, columns padded to their widest cell."""
    table = [HEADINGS, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADINGS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in table
    )
