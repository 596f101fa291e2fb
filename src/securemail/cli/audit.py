"""``securemail audit verify``: check an audit log's hash chain, and its head if recorded.

Exit status: 0 the log holds, 1 a record was edited, removed, reordered or cut off
(``error: audit-broken: line N: …``), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from securemail import audit
from securemail.cli.output import JSON_OPTION, echo_json


@click.group("audit")
def audit_group() -> None:
    """Verify tamper-evident audit logs."""


@audit_group.command("verify")
@click.argument("log", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--records",
    type=click.IntRange(min=1),
    help="Record count of a head printed by an earlier command (with --digest).",
)
@click.option(
    "--digest",
    "head_digest",
    metavar="HEX",
    help="Digest of that head: detects records removed from the end.",
)
@JSON_OPTION
def verify_command(log: Path, records: int | None, head_digest: str | None, as_json: bool) -> None:
    """Verify LOG: every record links to the one before; with a head, nothing was dropped."""
    if (records is None) != (head_digest is None):
        raise click.UsageError("give --records and --digest together (a head), or neither")
    head = None if records is None or head_digest is None else audit.Head(records, head_digest)
    check = audit.verify(log, head)
    if as_json:
        echo_json({"log": log, "ok": check.ok, "records": check.records, "head": head is not None})
    if not check.ok:
        click.echo(f"error: audit-broken: line {check.broken_line}: {check.problem}", err=True)
        sys.exit(1)
    if as_json:
        return
    suffix = "" if head is None else f", matching head {head.records}"
    click.echo(f"{log}: {check.records} records, chain intact{suffix}")
    if head is None:
        click.echo(
            "note: without a recorded head, records removed from the end cannot be detected",
            err=True,
        )
