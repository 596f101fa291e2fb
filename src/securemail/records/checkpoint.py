"""Signed checkpoints: the node's own key signs the chain's head, as CMS SignedData.

A checkpoint is a SignedData (RFC 5652, content type id-data, the content embedded) over
the RFC 8785 object ``{"digest","node","reason","seq","time","v"}``: the head record's
number and digest when it was taken. Anyone holding the node's certificate checks it with
``openssl cms -verify -inform DER -purpose any``. Once a checkpoint exists, editing any
record at or before its ``seq`` (even recomputing every digest after it) or cutting the
log's end off is caught: the signed digest no longer matches. Taken by the node at a fixed
interval and at its stop (:mod:`securemail.records.service`), when the chain has grown.

Security: the signing key is the node's own (its ``[peer]`` TLS key, which names the
node), opened with the node passphrase by the composition root; this module gets the
identity, never the passphrase.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import Connection, func, select

from securemail.records.chain import current_head, timestamp
from securemail.records.schema import checkpoints
from securemail.smime import SignerIdentity
from securemail.smime.sign import sign

INTERVAL = "interval"
SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as stored: what it says, and the signed DER that says it."""

    id: int
    seq: int
    digest: str
    time: datetime
    reason: str
    signed: bytes


def statement(node: str, seq: int, digest: str, time: datetime, reason: str) -> bytes:
    """The signed content of a checkpoint (RFC 8785)."""
    body: dict[str, Any] = {"v": 1, "node": node, "seq": seq, "digest": digest}
    return rfc8785.dumps(body | {"time": timestamp(time), "reason": reason})


def read_statement(content: bytes) -> dict[str, Any]:
    """A checkpoint's content back; ValueError unless it is one in canonical form."""
    value = json.loads(content)
    if not isinstance(value, dict) or rfc8785.dumps(value) != content:
        raise ValueError("not a canonical checkpoint statement")
    if set(value) != {"v", "node", "seq", "digest", "time", "reason"}:
        raise ValueError("checkpoint statement members")
    return value


def take(
    conn: Connection, signer: SignerIdentity, node: str, now: datetime, reason: str
) -> Checkpoint | None:
    """Sign the current head if the chain grew since the last checkpoint; the new one."""
    current = current_head(conn)
    last = conn.execute(select(func.max(checkpoints.c.seq))).scalar()
    if current.seq == 0 or (last is not None and int(last) >= current.seq):
        return None
    content = statement(node, current.seq, current.digest, now, reason)
    signed = sign(content, signer, now=now).der.join()
    values = {"seq": current.seq, "digest": current.digest, "time": now, "reason": reason}
    new_id = conn.execute(
        checkpoints.insert().values(values | {"signed": signed})
    ).inserted_primary_key
    assert new_id is not None  # noqa: S101 (an insert has a key)
    return Checkpoint(int(new_id[0]), current.seq, current.digest, now, reason, signed)


def stored(conn: Connection) -> list[Checkpoint]:
    """Every checkpoint, oldest first."""
    rows = conn.execute(select(checkpoints).order_by(checkpoints.c.id))
    return [
        Checkpoint(int(r.id), int(r.seq), str(r.digest), r.time, str(r.reason), bytes(r.signed))
        for r in rows
    ]
