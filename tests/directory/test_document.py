"""The signed directory document: canonical form, operator signature, succession rules."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.directory import (
    Accepted,
    Directory,
    DirectoryError,
    DirectoryReason,
    canonical,
    check_succession,
    digest,
    next_version,
    sign_document,
    verify_document,
)
from securemail.directory.model import HistoryEntry
from securemail.pki.authority import issue
from tests.conftest import NOW, Pki, require_tool
from tests.directory.conftest import FEDERATION, Operator, member_of


def _second(pki: Pki, first: Directory) -> Directory:
    return next_version(
        first,
        digest(canonical(first)),
        federation=FEDERATION,
        members=(*first.members, member_of(pki.council, "council")),
        crls=first.crls,
        now=NOW + timedelta(hours=1),
    )


def test_signed_document_verifies_and_round_trips(
    pki: Pki, operator: Operator, first: Directory
) -> None:
    """The operator's signature verifies against the anchor; the members come back equal."""
    document, signature = sign_document(first, operator.signer, now=NOW)
    loaded = verify_document(
        document, signature, anchors=[pki.ca.certificate], now=NOW, federation=FEDERATION
    )
    assert loaded == first
    assert canonical(loaded) == document


@pytest.mark.parametrize("change", ["edit", "truncate", "reformat"])
def test_altered_document_refused(
    pki: Pki, operator: Operator, first: Directory, change: str
) -> None:
    """An edited, truncated or re-formatted document is refused with its own reason."""
    document, signature = sign_document(first, operator.signer, now=NOW)
    altered = {
        "edit": document.replace(b"ministry.govt.nz", b"ministrx.govt.nz"),
        "truncate": document[:-10],
        "reformat": json.dumps(json.loads(document), indent=1).encode(),
    }[change]
    with pytest.raises(DirectoryError) as refused:
        verify_document(altered, signature, anchors=[pki.ca.certificate], now=NOW)
    expected = {
        "edit": DirectoryReason.SIGNATURE_INVALID,
        "truncate": DirectoryReason.MALFORMED,
        "reformat": DirectoryReason.NOT_CANONICAL,
    }[change]
    assert refused.value.reason is expected


def test_signed_by_a_member_gateway_refused(pki: Pki, first: Directory) -> None:
    """A gateway's S/MIME certificate cannot sign a directory (wrong purpose)."""
    document, signature = sign_document(first, pki.agency.signer, now=NOW)
    with pytest.raises(DirectoryError) as refused:
        verify_document(document, signature, anchors=[pki.ca.certificate], now=NOW)
    assert refused.value.reason is DirectoryReason.UNTRUSTED_SIGNER


def test_signed_under_another_anchor_refused(
    pki: Pki, operator: Operator, first: Directory
) -> None:
    """A directory is only as good as the anchor the gateway was configured with."""
    document, signature = sign_document(first, operator.signer, now=NOW)
    other = issue(pki.ca, "x", now=NOW).certificate
    with pytest.raises(DirectoryError) as refused:
        verify_document(document, signature, anchors=[other], now=NOW)
    assert refused.value.reason is DirectoryReason.UNTRUSTED_SIGNER


def test_wrong_federation_refused(pki: Pki, operator: Operator, first: Directory) -> None:
    """A directory of another federation is refused by name."""
    document, signature = sign_document(first, operator.signer, now=NOW)
    with pytest.raises(DirectoryError) as refused:
        verify_document(
            document,
            signature,
            anchors=[pki.ca.certificate],
            now=NOW,
            federation="Another Federation",
        )
    assert refused.value.reason is DirectoryReason.WRONG_FEDERATION


def test_succession_accepts_descendants_and_refuses_rollback_and_fork(
    pki: Pki, first: Directory
) -> None:
    """Next versions chain; an older serial is a rollback, another same-serial doc a fork."""
    first_digest = digest(canonical(first))
    second = _second(pki, first)
    second_digest = digest(canonical(second))
    assert check_succession(None, first, first_digest)
    assert check_succession(Accepted(1, first_digest), second, second_digest)
    assert not check_succession(Accepted(2, second_digest), second, second_digest)
    third = next_version(
        second,
        second_digest,
        federation=FEDERATION,
        members=second.members,
        crls=second.crls,
        now=NOW + timedelta(hours=2),
    )
    assert check_succession(Accepted(1, first_digest), third, digest(canonical(third)))
    with pytest.raises(DirectoryError) as rollback:
        check_succession(Accepted(2, second_digest), first, first_digest)
    assert rollback.value.reason is DirectoryReason.ROLLBACK
    with pytest.raises(DirectoryError) as fork:
        check_succession(Accepted(2, "sha256:" + "0" * 64), second, second_digest)
    assert fork.value.reason is DirectoryReason.FORK
    with pytest.raises(DirectoryError) as fork_below:
        check_succession(Accepted(1, "sha256:" + "0" * 64), second, second_digest)
    assert fork_below.value.reason is DirectoryReason.FORK


def test_history_that_omits_the_accepted_version_is_a_broken_chain(
    pki: Pki, first: Directory
) -> None:
    """A version whose history does not contain the accepted serial does not chain."""
    restarted = Directory(
        FEDERATION, 5, NOW, NOW + timedelta(days=7), first.members, first.crls, history=(_entry(4),)
    )
    with pytest.raises(DirectoryError) as refused:
        check_succession(Accepted(2, "sha256:" + "1" * 64), restarted, "sha256:" + "2" * 64)
    assert refused.value.reason is DirectoryReason.BROKEN_CHAIN


def _entry(serial: int) -> HistoryEntry:
    return HistoryEntry(serial, "sha256:" + "3" * 64)


def test_openssl_verifies_the_directory_signature(
    pki: Pki, operator: Operator, first: Directory, tmp_path: Path
) -> None:
    """`openssl cms -verify` accepts the detached directory signature against the anchor."""
    openssl = require_tool("openssl")
    document, signature = sign_document(first, operator.signer, now=NOW)
    (tmp_path / "directory.json").write_bytes(document)
    (tmp_path / "directory.json.p7s").write_bytes(signature)
    ca_path, _ = pki.write_ca(tmp_path)
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "directory.json.p7s",
            "-content",
            "directory.json",
            "-CAfile",
            ca_path.name,
            "-purpose",
            "any",
            "-attime",
            str(int(NOW.timestamp())),
            "-out",
            "/dev/null",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def test_expired_anchor_refused(pki: Pki, operator: Operator, first: Directory) -> None:
    """Once the federation anchor (and so the operator certificate) has expired: refused."""
    document, signature = sign_document(first, operator.signer, now=NOW)
    long_after = NOW + timedelta(days=3700)
    with pytest.raises(DirectoryError) as refused:
        verify_document(document, signature, anchors=[pki.ca.certificate], now=long_after)
    assert refused.value.reason is DirectoryReason.UNTRUSTED_SIGNER
    assert "certificate-expired" in refused.value.detail


@pytest.mark.parametrize("signature", [b"", b"\x30\x00", b"not a signature"])
def test_unsigned_document_refused(pki: Pki, first: Directory, signature: bytes) -> None:
    """A document without a valid signature is refused, whatever stands in its place."""
    with pytest.raises(DirectoryError) as refused:
        verify_document(canonical(first), signature, anchors=[pki.ca.certificate], now=NOW)
    assert refused.value.reason is DirectoryReason.SIGNATURE_INVALID
