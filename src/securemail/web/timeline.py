"""What happened to a message an account sent: the per-recipient timeline and its evidence.

The same reading of the queue as ``securemail track`` and ``securemail evidence export``
(:mod:`securemail.cli.track`): each outbound entry with the Message-ID, its events per
recipient (queued, relayed, receipted, failed), the receipt state, and a ZIP of the evidence
bundle once receipts have come back.

Security: a Message-ID comes from the browser or from a stored message, either of which the
user controls. Only outbound entries whose ``auth`` is this account are shown or exported,
so nobody sees the timeline of mail they did not send. Calls here block (the queue store):
run them with ``WebContext.db``.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from securemail import operations
from securemail.evidence import write_bundle
from securemail.queue import Direction, Entry
from securemail.queue.access import OperatorQueue


@dataclass(frozen=True)
class Delivery:
    """One recipient's path: its steps and its receipt state (e.g. "awaiting", "receipted")."""

    recipient: str
    receipt: str
    steps: tuple[operations.Step, ...]


@dataclass(frozen=True)
class Timeline:
    message_id: str
    deliveries: tuple[Delivery, ...]

    @property
    def receipted(self) -> bool:
        return any(d.receipt == "receipted" for d in self.deliveries)


def sent_entries(store: OperatorQueue, message_id: str, account: str) -> list[Entry]:
    """The outbound entries of ``message_id`` that ``account`` submitted."""
    return [
        e
        for e in store.entries_by_message_id(message_id)
        if e.direction is Direction.OUTBOUND and e.auth == account
    ]


def timeline(store: OperatorQueue, message_id: str, account: str) -> Timeline | None:
    """The timeline of ``message_id`` as sent by ``account``; None if it sent no such message."""
    try:
        tracks = operations.track(store, message_id, submitted_by=account)
    except operations.OperationError:
        return None
    deliveries = tuple(Delivery(t.recipient, t.receipt, t.timeline) for t in tracks)
    return Timeline(message_id, deliveries)


def evidence_zip(
    store: OperatorQueue,
    message_id: str,
    account: str,
    *,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
) -> bytes | None:
    """A ZIP of the evidence bundle(s), one folder per signed copy; None if no receipt yet."""
    entries = sent_entries(store, message_id, account)
    signatures = {s.content_identifier: s for e in entries for s in store.signatures_for(e.id)}
    ours = {e.id for e in entries}
    receipts: dict[str, list[tuple[str, bytes, bytes]]] = {}
    for record in store.receipt_records(message_id):
        if record.entry_id not in ours or record.receipt is None or record.evidence is None:
            continue
        cid = json.loads(record.evidence)["content_identifier"]
        if cid in signatures:
            receipts.setdefault(cid, []).append(
                (record.recipient, record.receipt, record.evidence.encode())
            )
    if not receipts:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for n, cid in enumerate(sorted(receipts), start=1):
            folder = root / f"{n}-{signatures[cid].peer_org}"
            write_bundle(
                folder,
                message_id=message_id,
                original_signed_data=signatures[cid].signed_data,
                receipts=receipts[cid],
                anchors=anchors,
                crls=crls,
            )
        return _zip(root)


def _zip(root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()
