"""``securemail track`` and ``securemail evidence export``: what happened to a message sent.

``track`` prints, per recipient, the timeline from the queue's history: queued, relayed,
receipted (with the receiving organisation's evidence), failed or expired. ``evidence
export`` writes what a court or an auditor needs to check a receipt without SecureMail:
the signed original, each receipt and its evidence, the federation anchor, and a README
with the exact ``openssl cms -verify_receipt`` command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography import x509

from securemail import operations
from securemail.cli.files import fail
from securemail.cli.queue import open_store
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.anchors import load_anchors
from securemail.config.node import NodeConfig
from securemail.directory.store import DirectoryStore
from securemail.errors import SecureMailError
from securemail.evidence import write_bundle
from securemail.queue import QueueStore, SentSignature


def _message_id(value: str) -> str:
    return operations.normalise_message_id(value)


@click.command("track")
@CONFIG_OPTION
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per recipient.")
def track_command(config_path: Path, message_id: str, as_json: bool) -> None:
    """The per-recipient timeline of a message this node sent (by its Message-ID)."""
    with open_store(config_path) as store:
        try:
            tracks = operations.track(store, message_id)
        except operations.OperationError as error:
            fail(error)
    for track in tracks:
        lines = [(step.time.isoformat(), step.what, step.detail) for step in track.timeline]
        _show(track.recipient, track.receipt, lines, track.evidence, as_json)


def _show(
    recipient: str,
    state: str,
    lines: list[tuple[str, str, str]],
    evidence: str | None,
    as_json: bool,
) -> None:
    if as_json:
        item: dict[str, object] = {"recipient": recipient, "receipt": state, "timeline": lines}
        item["evidence"] = None if evidence is None else json.loads(evidence)
        click.echo(json.dumps(item))
        return
    click.echo(f"{recipient}  (receipt: {state})")
    for time, what, detail in lines:
        click.echo(f"  {time}  {what:<22} {detail}")
    if evidence:
        click.echo(f"  evidence: {evidence}")


@click.group("evidence")
def evidence_group() -> None:
    """Export the proof of delivery of a message this node sent."""


@evidence_group.command("export")
@CONFIG_OPTION
@click.argument("message_id")
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new (or empty) folder for the bundle.",
)
def export_command(config_path: Path, message_id: str, out: Path) -> None:
    """Write the signed original, each receipt, the evidence and how to verify them."""
    message_id = _message_id(message_id)
    config = read_config(config_path)
    with open_store(config_path) as store:
        signatures, receipts = _gather(store, message_id)
    if not signatures:
        raise click.ClickException(f"no signed copy of {message_id} was kept by this node")
    if not receipts:
        raise click.ClickException(f"no receipt has come back for {message_id} yet")
    anchors = load_anchors(config.anchor)
    crls = _directory_crls(config)
    by_copy = {s.content_identifier: s for s in signatures}
    copies = sorted({cid for cid, *_ in receipts if cid in by_copy})
    for n, cid in enumerate(copies, start=1):
        # one bundle per signed copy (recipients at different gateways got different copies)
        folder = out if len(copies) == 1 else out / f"{n}-{by_copy[cid].peer_org}"
        paths = write_bundle(
            folder,
            message_id=message_id,
            original_signed_data=by_copy[cid].signed_data,
            receipts=[(rcpt, der, ev) for c, rcpt, der, ev in receipts if c == cid],
            anchors=anchors,
            crls=crls,
        )
        for path in paths:
            click.echo(str(path))


def _directory_crls(config: NodeConfig) -> tuple[x509.CertificateRevocationList, ...]:
    """The CRLs of the last verified directory, so the bundle's command checks revocation."""
    store = DirectoryStore(
        config.data_dir / "directory", load_anchors(config.anchor), federation=config.federation
    )
    try:
        stored = store.load(datetime.now(UTC))
    except (SecureMailError, OSError):
        return ()
    return () if stored is None else stored.directory.crls


def _gather(
    store: QueueStore, message_id: str
) -> tuple[list[SentSignature], list[tuple[str, str, bytes, bytes]]]:
    signatures = [
        s for e in store.entries_by_message_id(message_id) for s in store.signatures_for(e.id)
    ]
    receipts = []
    for record in store.receipt_records(message_id):
        if record.receipt is None or record.evidence is None:
            continue
        cid = json.loads(record.evidence)["content_identifier"]
        receipts.append((cid, record.recipient, record.receipt, record.evidence.encode()))
    return signatures, receipts
