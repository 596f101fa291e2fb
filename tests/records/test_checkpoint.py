"""Checkpoints: the head signed by the node's key, verified by openssl and by verify."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import rfc8785
from sqlalchemy import Engine, select, update

from securemail.records.chain import GENESIS, digest
from securemail.records.checkpoint import INTERVAL, SHUTDOWN, take
from securemail.records.schema import checkpoints, head, log
from securemail.records.verify import CheckpointTrust, Verdict, verify
from securemail.storage.engine import transaction
from tests.conftest import Pki, require_tool
from tests.records.conftest import T0, some_records

LATER = T0 + timedelta(hours=1)


def _checkpoint(engine: Engine, pki: Pki, reason: str = INTERVAL):  # type: ignore[no-untyped-def]
    with transaction(engine, "checkpoint", write=True) as conn:
        return take(conn, pki.agency.signer, "gw.agency.govt.nz", LATER, reason)


def _verdict(engine: Engine, pki: Pki) -> Verdict:
    with transaction(engine, "verify", write=False) as conn:
        return verify(conn, CheckpointTrust(certificates=(pki.agency.certificate,)))


def test_checkpoint_verifies_with_openssl_cms(engine: Engine, pki: Pki, tmp_path: Path) -> None:
    """`openssl cms -verify` accepts a checkpoint and outputs the head it signed."""
    openssl = require_tool("openssl")
    some_records(engine, 4)
    point = _checkpoint(engine, pki)
    assert point is not None and point.seq == 4
    (tmp_path / "cp.der").write_bytes(point.signed)
    ca, _ = pki.write_ca(tmp_path)
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            "cp.der",
            "-CAfile",
            str(ca),
            "-purpose",
            "any",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    said = json.loads(done.stdout)
    assert (said["seq"], said["digest"], said["node"]) == (4, point.digest, "gw.agency.govt.nz")
    assert _verdict(engine, pki).ok and _verdict(engine, pki).checkpoints == 1


def test_no_checkpoint_when_the_chain_has_not_moved(engine: Engine, pki: Pki) -> None:
    """A second checkpoint with nothing new is not taken; one after new records is."""
    some_records(engine, 2)
    assert _checkpoint(engine, pki) is not None
    assert _checkpoint(engine, pki, SHUTDOWN) is None
    some_records(engine, 1, start=LATER)
    assert _checkpoint(engine, pki, SHUTDOWN) is not None


def test_one_changed_byte_of_a_checkpoint_is_named(engine: Engine, pki: Pki) -> None:
    """Flipping one byte inside a checkpoint's signed statement fails verify naming it."""
    some_records(engine, 3)
    point = _checkpoint(engine, pki)
    assert point is not None
    signed = bytearray(point.signed)
    at = bytes(signed).index(point.digest.encode())
    signed[at] ^= 0x01
    with transaction(engine, "tamper", write=True) as conn:
        conn.execute(update(checkpoints).values(signed=bytes(signed)))
    verdict = _verdict(engine, pki)
    assert verdict.bad_checkpoint == point.id and "signature" in (verdict.problem or "")


def test_a_rewritten_log_is_caught_by_the_checkpoint(engine: Engine, pki: Pki) -> None:
    """Rewriting a record and recomputing every digest and the head leaves the chain
    consistent, but the signed checkpoint names the rewritten record."""
    some_records(engine, 4)
    point = _checkpoint(engine, pki)
    assert point is not None
    with transaction(engine, "tamper", write=True) as conn:
        prev = GENESIS
        for row in list(conn.execute(select(log).order_by(log.c.seq))):
            value = json.loads(row.record)
            value["prev"] = prev
            if row.seq == 2:
                value["details"]["to"] = "someone@else.nz"
            text = rfc8785.dumps(value)
            prev = digest(text)
            values = {"record": text.decode(), "prev": value["prev"], "digest": prev}
            conn.execute(update(log).where(log.c.seq == row.seq).values(values))
        conn.execute(update(head).values(digest=prev))
    verdict = _verdict(engine, pki)
    assert verdict.bad_checkpoint == point.id and verdict.bad_record == 4, verdict


def test_a_checkpoint_by_an_untrusted_key_is_refused(engine: Engine, pki: Pki) -> None:
    """A checkpoint by another node's key counts only if that node shares the database
    (is named) and the anchor issued it a certificate naming it; another member's gateway
    key under the same anchor does not count."""
    some_records(engine, 2)
    with transaction(engine, "checkpoint", write=True) as conn:
        take(conn, pki.ministry.signer, "ministry.govt.nz", LATER, INTERVAL)
    anchors = (pki.ca.certificate,)
    refusing = (
        CheckpointTrust(certificates=(pki.agency.certificate,)),
        CheckpointTrust(anchors=anchors, nodes=("agency.govt.nz",)),  # not a sibling node
    )
    for trust in refusing:
        with transaction(engine, "verify", write=False) as conn:
            verdict = verify(conn, trust)
        assert not verdict.ok and "trust" in (verdict.problem or "")
    sibling = CheckpointTrust(anchors=anchors, nodes=("ministry.govt.nz",))
    with transaction(engine, "verify", write=False) as conn:
        assert verify(conn, sibling).ok


def test_a_checkpoint_claiming_a_name_its_certificate_lacks_is_refused(
    engine: Engine, pki: Pki
) -> None:
    """A member key signing as a sibling node's name (not in its certificate) fails verify."""
    some_records(engine, 2)
    with transaction(engine, "checkpoint", write=True) as conn:
        take(conn, pki.ministry.signer, "agency.govt.nz", LATER, INTERVAL)
    trust = CheckpointTrust(anchors=(pki.ca.certificate,), nodes=("agency.govt.nz",))
    with transaction(engine, "verify", write=False) as conn:
        verdict = verify(conn, trust)
    assert not verdict.ok and "trust" in (verdict.problem or "")
