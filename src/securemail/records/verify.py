"""Verifying the operations log: every link, every disposal, every checkpoint.

:func:`verify` walks the records in ``seq`` order and stops at the first that does not
hold, naming it: a record whose bytes are not canonical or do not hash to its digest
(changed), a number missing (removed), a record holding another's number (swapped or
moved), a ``prev`` that is not the digest before it (altered or reordered), a disposed-of
record no disposal record accounts for, a head row that does not match the last record
(cut off at its end). Then every checkpoint: its signature (by a trusted certificate), its
statement against its columns, and its digest against the record it names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sqlalchemy import Connection, select

from securemail.records.chain import GENESIS, current_head, digest, timestamp
from securemail.records.checkpoint import Checkpoint, read_statement, stored
from securemail.records.schema import log
from securemail.smime import SmimeError
from securemail.smime.verify import verify_signed_data

BATCH = 2000
DISPOSED = "records.disposed"


@dataclass(frozen=True)
class Verdict:
    """What holds: records and checkpoints checked; the first problem and what it names."""

    records: int
    disposed: int
    checkpoints: int
    problem: str | None = None
    bad_record: int | None = None
    bad_checkpoint: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class BrokenLogError(Exception):
    """The first problem found (internal: becomes a :class:`Verdict`)."""

    def __init__(self, problem: str, record: int | None = None, point: int | None = None):
        super().__init__(problem)
        self.problem, self.record, self.point = problem, record, point


@dataclass
class _Walk:
    seq: int = 0
    prev: str = GENESIS
    disposed: int = 0
    disposals: dict[int, dict[str, str]] = field(default_factory=dict)
    destroyed: dict[int, list[str]] = field(default_factory=dict)
    wanted: dict[int, str] = field(default_factory=dict)  # checkpoint seq -> digest found


@dataclass(frozen=True)
class CheckpointTrust:
    """Whose checkpoints count: the node's own certificate(s), and the nodes sharing its
    database (``nodes``: their names), each by a certificate the federation's ``anchors``
    issued that names it. Another member's gateway key, issued by the same anchor, does not
    count: it names another host."""

    certificates: tuple[x509.Certificate, ...] = ()
    anchors: tuple[x509.Certificate, ...] = ()
    nodes: tuple[str, ...] = ()


def verify(conn: Connection, trust: CheckpointTrust) -> Verdict:
    """Verify the log on ``conn``; checkpoints must be signed as ``trust`` says."""
    points = stored(conn)
    walk = _Walk(wanted={p.seq: "" for p in points})
    try:
        for row in _rows(conn):
            _check_row(walk, row)
        _check_end(conn, walk)
        _check_disposals(walk)
        for point in points:
            _check_point(walk, point, trust)
    except BrokenLogError as broken:
        return Verdict(walk.seq, walk.disposed, 0, broken.problem, broken.record, broken.point)
    return Verdict(walk.seq, walk.disposed, len(points))


def _rows(conn: Connection) -> Iterator[Any]:
    after = -1
    while True:
        query = select(log).where(log.c.seq > after).order_by(log.c.seq).limit(BATCH)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < BATCH:
            return
        after = rows[-1].seq


def _check_row(walk: _Walk, row: Any) -> None:
    expected = walk.seq + 1
    if row.seq != expected:
        raise BrokenLogError(
            f"record {expected} is missing: record {row.seq} follows record {walk.seq} "
            "(records were removed)",
            expected,
        )
    if row.prev != walk.prev:
        raise BrokenLogError(
            f"record {row.seq} does not follow record {walk.seq}: record {walk.seq} was "
            "altered, or records were reordered",
            row.seq,
        )
    if row.record is None:
        _check_disposed(walk, row)
    else:
        _check_content(walk, row)
    walk.seq, walk.prev = row.seq, row.digest
    if row.seq in walk.wanted:
        walk.wanted[row.seq] = row.digest


def _check_content(walk: _Walk, row: Any) -> None:
    text = str(row.record).encode("utf-8")
    try:
        value = json.loads(text)
        canonical = rfc8785.dumps(value) == text and isinstance(value, dict)
    except (ValueError, rfc8785.CanonicalizationError):
        canonical = False
    if not canonical:
        raise BrokenLogError(f"record {row.seq} is not in canonical form: it was edited", row.seq)
    if value.get("seq") != row.seq:
        raise BrokenLogError(
            f"record {row.seq} holds record {value.get('seq')}: records were swapped or moved",
            row.seq,
        )
    if digest(text) != row.digest or value.get("prev") != row.prev:
        raise BrokenLogError(f"record {row.seq} does not match its digest: it was changed", row.seq)
    columns = (row.record_class, row.event, row.message_id, timestamp(row.time))
    if columns != (value["class"], value["event"], value["message_id"], value["time"]):
        raise BrokenLogError(f"record {row.seq}: its columns differ from the record", row.seq)
    if value["event"] == DISPOSED:
        walk.disposals[row.seq] = value["details"]


def _check_disposed(walk: _Walk, row: Any) -> None:
    if row.disposed_by is None or row.disposed_by <= row.seq:
        raise BrokenLogError(
            f"record {row.seq} is empty and no disposal record destroyed it", row.seq
        )
    walk.disposed += 1
    walk.destroyed.setdefault(int(row.disposed_by), []).append(str(row.digest))


def _check_end(conn: Connection, walk: _Walk) -> None:
    head = current_head(conn)
    if (head.seq, head.digest) != (walk.seq, walk.prev):
        raise BrokenLogError(
            f"the log ends at record {walk.seq} but its head names record {head.seq}: "
            "records were removed from its end, or the head was changed",
            walk.seq + 1,
        )


def destroyed_digest(digests: Sequence[str]) -> str:
    """What a disposal record says of the log records it destroyed: the SHA-256 of their
    digests, one per line, in ``seq`` order."""
    return hashlib.sha256("".join(f"{d}\n" for d in digests).encode("ascii")).hexdigest()


def _check_disposals(walk: _Walk) -> None:
    for by, digests in walk.destroyed.items():
        details = walk.disposals.get(by)
        if details is None:
            raise BrokenLogError(f"records were emptied by record {by}, which is no disposal", by)
        said = (details.get("log_records"), details.get("log_digest"))
        if said != (str(len(digests)), destroyed_digest(digests)):
            raise BrokenLogError(f"disposal record {by} does not account for what it destroyed", by)


def _check_point(walk: _Walk, point: Checkpoint, trust: CheckpointTrust) -> None:
    name = f"checkpoint {point.id} (record {point.seq})"
    try:
        content, signature = verify_signed_data(point.signed)
        said = read_statement(content)
    except (SmimeError, ValueError) as error:
        raise BrokenLogError(
            f"{name}: its signature does not verify ({error})", None, point.id
        ) from None
    if not _trusted(signature.signer, str(said["node"]), trust):
        raise BrokenLogError(
            f"{name}: signed by a certificate this node does not trust", None, point.id
        )
    if (said["seq"], said["digest"], said["time"]) != (
        point.seq,
        point.digest,
        timestamp(point.time),
    ):
        raise BrokenLogError(f"{name}: its columns differ from what it signed", None, point.id)
    found = walk.wanted.get(point.seq, "")
    if not found:
        raise BrokenLogError(
            f"{name}: the log ends at record {walk.seq}: records were removed from its end",
            walk.seq + 1,
            point.id,
        )
    if found != point.digest:
        raise BrokenLogError(
            f"{name}: record {point.seq} is not the one it signed: the log was rewritten",
            point.seq,
            point.id,
        )


def _trusted(signer: x509.Certificate, node: str, trust: CheckpointTrust) -> bool:
    if signer in trust.certificates:
        return True
    if node.lower() not in {n.lower() for n in trust.nodes} or node.lower() not in _names(signer):
        return False
    for anchor in trust.anchors:
        try:
            signer.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _names(certificate: x509.Certificate) -> set[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return {name.lower() for name in names.value.get_values_for_type(x509.DNSName)}
