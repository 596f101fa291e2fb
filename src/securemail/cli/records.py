"""``securemail records``: verify the log, dispose of what is due, legal holds, exports.

The commands open the node's database directly (the node may be running: each change is
one transaction under the chain's lock). ``verify`` trusts checkpoints signed by the
node's own certificate or under the federation's anchors.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine

from securemail.cli.files import fail
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.anchors import load_anchors
from securemail.config.node import NodeConfig
from securemail.config.reasons import NodeReason
from securemail.errors import SecureMailError
from securemail.node.context import NodeError, read_passphrase
from securemail.records import disposal, holds
from securemail.records.errors import RecordsError, RecordsReason
from securemail.records.export import RecordsRequest, check_destination, export
from securemail.records.service import node_signer
from securemail.records.verify import CheckpointTrust, verify
from securemail.smime.keys import load_certificate
from securemail.storage.engine import connect, sqlite_path, transaction, upgrade


@click.group("records")
def records_group() -> None:
    """The node's records: verify the log, dispose of what is due, legal holds, requests."""


@contextmanager
def node_database(config: NodeConfig) -> Iterator[Engine]:
    """The node's database, which must exist (a wrong config must not look like no records)."""
    database = sqlite_path(config.database)
    if not config.data_dir.is_dir() or (database is not None and not database.is_file()):
        detail = f"no node database for {config.name}: has the node run with this config?"
        fail(NodeError(NodeReason.BAD_CONFIG, detail))
    engine = connect(config.database)
    try:
        upgrade(engine)
        yield engine
    except SecureMailError as error:
        fail(error)
    finally:
        engine.dispose()


def operator() -> str:
    """Who acts, as the records name a CLI operator."""
    return f"cli:{getpass.getuser()}"


def _now() -> datetime:
    return datetime.now(UTC)


@records_group.command("verify")
@CONFIG_OPTION
@JSON_OPTION
def verify_command(config_path: Path, as_json: bool) -> None:
    """Check every record, disposal and checkpoint; name the first that does not hold."""
    config = read_config(config_path)
    trust = CheckpointTrust(
        certificates=(load_certificate(config.tls_certificate.read_bytes()),),
        anchors=load_anchors(config.anchor),
        nodes=(config.name, *config.records.checkpoint_signers),
    )
    with node_database(config) as engine, transaction(engine, "verify", write=False) as conn:
        verdict = verify(conn, trust)
    if as_json:  # printed for a broken log too, before the error line and exit 1
        echo_json({"ok": verdict.ok} | dataclasses.asdict(verdict))
    if not verdict.ok:
        fail(RecordsError(RecordsReason.LOG_BROKEN, verdict.problem or ""))
    if as_json:
        return
    click.echo(
        f"records: the log holds: {verdict.records} records ({verdict.disposed} disposed of), "
        f"{verdict.checkpoints} signed checkpoints"
    )


@records_group.command("dispose")
@CONFIG_OPTION
@JSON_OPTION
def dispose_command(config_path: Path, as_json: bool) -> None:
    """Destroy what is past its retention and not held; record each disposal in the log."""
    config = read_config(config_path)
    with node_database(config) as engine:
        done = disposal.dispose(engine, config.records, _now())
    if as_json:
        echo_json({"disposed": list(done)})
        return
    for item in done:
        click.echo(
            f"disposed: {item.record_class}: {item.entries} queue entries, "
            f"{item.log_records} log records (disposal record {item.seq})"
        )
    if not done:
        click.echo("disposed: nothing is due")


@records_group.command("hold")
@CONFIG_OPTION
@click.option("--address", default=None, help="Hold every record about this address.")
@click.option("--message-id", default=None, help="Hold every record of this Message-ID.")
@click.option("--reason", required=True, help="Why (e.g. the request or proceeding).")
def hold_command(
    config_path: Path, address: str | None, message_id: str | None, reason: str
) -> None:
    """Place a legal hold: what it covers is not disposed of until it is released."""
    config = read_config(config_path)
    with node_database(config) as engine:
        hold = holds.place(
            engine,
            address=address,
            message_id=message_id,
            reason=reason,
            now=_now(),
            by=operator(),
        )
    click.echo(f"hold {hold.id} placed on {hold.address or hold.message_id}")


@records_group.command("holds")
@CONFIG_OPTION
@click.option("--all", "all_holds", is_flag=True, help="Released holds too.")
def holds_command(config_path: Path, all_holds: bool) -> None:
    """List the standing legal holds."""
    config = read_config(config_path)
    with node_database(config) as engine, transaction(engine, "holds", write=False) as conn:
        found = holds.listed(conn, all_holds=all_holds)
    for hold in found:
        released = f"  released {hold.released:%Y-%m-%d %H:%M}" if hold.released else ""
        click.echo(
            f"{hold.id}  {hold.placed:%Y-%m-%d %H:%M}  {hold.address or hold.message_id}  "
            f"{hold.reason}{released}"
        )


@records_group.command("release")
@CONFIG_OPTION
@click.argument("hold_id")
def release_command(config_path: Path, hold_id: str) -> None:
    """Release a legal hold (what it covered is disposed of when due)."""
    config = read_config(config_path)
    with node_database(config) as engine:
        hold = holds.release(engine, hold_id, now=_now(), by=operator())
    click.echo(f"hold {hold.id} released")


def _day(value: str | None, *, end: bool) -> datetime | None:
    if value is None:
        return None
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        detail = f"{value!r} is not a date (YYYY-MM-DD)"
        fail(RecordsError(RecordsReason.BAD_REQUEST, detail))
    if day.tzinfo is None:
        day = day.replace(tzinfo=UTC)
    if end and len(value) == 10:  # a whole day: up to its last moment
        day += timedelta(days=1, microseconds=-1)
    return day


@records_group.command("export")
@CONFIG_OPTION
@click.option("--subject", default=None, help="Privacy Act: every record about this address.")
@click.option("--query", default=None, help="OIA: every record whose metadata holds this text.")
@click.option("--from", "start", default=None, help="First day (YYYY-MM-DD, UTC).")
@click.option("--to", "end", default=None, help="Last day (YYYY-MM-DD, UTC).")
@click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the bundle folder goes (default: exports/ in the node's data_dir).",
)
@click.option(
    "--outside-node-storage",
    "outside",
    is_flag=True,
    help="Allow a destination outside the node's data_dir (recorded).",
)
def export_command(
    config_path: Path,
    subject: str | None,
    query: str | None,
    start: str | None,
    end: str | None,
    into: Path | None,
    outside: bool,
) -> None:
    """Write a signed bundle of the records a Privacy Act or OIA request covers."""
    config = read_config(config_path)
    request = RecordsRequest(subject, query, _day(start, end=False), _day(end, end=True))
    destination = into or config.data_dir / "exports"
    try:
        request.check()
        check_destination(destination, config.data_dir, outside=outside)
        signer = node_signer(config, read_passphrase(config))
    except SecureMailError as error:
        fail(error)
    with node_database(config) as engine:
        bundle = export(
            engine,
            request,
            destination,
            signer=signer,
            node=config.name,
            now=_now(),
            by=operator(),
            outside=outside,
        )
    click.echo(
        f"exported {bundle.records} records to {bundle.folder} "
        f"(manifest sha256 {bundle.manifest_sha256}, signed: manifest.json.sig)"
    )
