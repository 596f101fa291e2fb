"""The evidence bundle: an auditor checks each receipt with the real openssl, as the README says."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from securemail.evidence import EvidenceError, EvidenceReason, write_bundle
from securemail.pki.authority import make_crl
from tests.conftest import MESSAGE, NOW, Pki, require_tool
from tests.evidence.conftest import Exchange, exchange

pytestmark = pytest.mark.interop


def _bundle(
    folder: Path,
    pki: Pki,
    sent: Exchange,
    *,
    receipts: Sequence[Exchange] | None = None,
    crls: Sequence[x509.CertificateRevocationList] = (),
    message_id: str = "<test-1@agency.govt.nz>",
) -> list[Path]:
    return write_bundle(
        folder,
        message_id=message_id,
        original_signed_data=sent.signed_data,
        receipts=[
            (r.evidence.recipient, r.receipt, r.evidence.to_json()) for r in receipts or [sent]
        ],
        anchors=[pki.ca.certificate],
        crls=crls,
    )


def _commands(folder: Path) -> list[list[str]]:
    """Every openssl command line in the README's code blocks, split as a shell would."""
    lines = (folder / "README.md").read_text().splitlines()
    return [shlex.split(line) for line in lines if line.startswith("openssl ")]


def _run_readme(folder: Path) -> list[subprocess.CompletedProcess[bytes]]:
    """Run the README's commands in the bundle with the real openssl binary."""
    openssl = require_tool("openssl")
    return [
        subprocess.run(
            [openssl, *command[1:]], cwd=folder, capture_output=True, timeout=60, check=False
        )
        for command in _commands(folder)
    ]


def test_files_written_private_even_under_an_open_umask(
    tmp_path: Path, pki: Pki, sent: Exchange
) -> None:
    """The bundle holds the original (cleartext), anchors, CRL, receipt, evidence and README,
    all 0600 in a new 0700 folder, whatever the umask."""
    folder = tmp_path / "bundle"
    previous = os.umask(0)
    try:
        paths = _bundle(folder, pki, sent, crls=[pki.crl])
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in paths) == [
        "README.md",
        "crl.pem",
        "evidence-1.json",
        "federation-ca.pem",
        "original.p7m",
        "receipt-1.der",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    assert (folder / "original.p7m").read_bytes() == sent.signed_data
    assert (folder / "receipt-1.der").read_bytes() == sent.receipt
    assert (folder / "evidence-1.json").read_bytes() == sent.evidence.to_json()
    readme = (folder / "README.md").read_text()
    assert "not a read receipt" in readme and "bob@ministry.govt.nz" in readme
    for path in paths[:-1]:
        assert f"`{path.name}`" in readme or path.name.startswith(("receipt-", "evidence-"))


def test_readme_commands_pass_with_real_openssl(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """The exact commands in the README verify the receipt, with revocation, and exit 0."""
    _bundle(tmp_path, pki, sent, crls=[pki.crl])
    assert "-crl_check" in _commands(tmp_path)[0]
    (done,) = _run_readme(tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Verification successful" in done.stdout + done.stderr


def test_several_receipts_each_get_a_command(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """Two recipients' receipts are numbered and each README command passes."""
    second = replace(sent, evidence=replace(sent.evidence, recipient="carol@ministry.govt.nz"))
    _bundle(tmp_path, pki, sent, receipts=[sent, second])
    assert [c[3] for c in _commands(tmp_path)] == ["receipt-1.der", "receipt-2.der"]
    assert [d.returncode for d in _run_readme(tmp_path)] == [0, 0]


def test_receipt_for_another_message_fails(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """A receipt made for a different message does not verify against this original."""
    other = exchange(pki, MESSAGE.replace(b"test-1", b"test-2"))
    _bundle(tmp_path, pki, sent, receipts=[other])
    (done,) = _run_readme(tmp_path)
    assert done.returncode != 0


def test_receipt_from_revoked_gateway_fails(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """With the CRL shipped, a receipt signed by a revoked gateway certificate fails."""
    revoked = exchange(pki, receipt_signer=pki.revoked)
    _bundle(tmp_path, pki, sent, receipts=[revoked], crls=[pki.crl])
    (done,) = _run_readme(tmp_path)
    assert done.returncode != 0
    assert b"revoked" in done.stderr


def test_crl_issued_later_is_shipped_but_not_used(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """A CRL not in force when the receipt was signed is not used, and the README says so."""
    later = make_crl(pki.ca, [], now=NOW + timedelta(days=30))
    _bundle(tmp_path, pki, sent, crls=[later])
    assert "-crl_check" not in _commands(tmp_path)[0]
    assert "does not check revocation" in (tmp_path / "README.md").read_text()
    assert [d.returncode for d in _run_readme(tmp_path)] == [0]


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """An export never mixes with other files, and leaves them alone."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EvidenceError) as refused:
        _bundle(tmp_path, pki, sent)
    assert refused.value.reason is EvidenceReason.BUNDLE_NOT_EMPTY
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_refuses_bad_input_before_writing(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """A receipt that is not a receipt, or evidence for another recipient, writes nothing."""
    folder = tmp_path / "bundle"
    cases = [
        [("bob@ministry.govt.nz", b"\x30\x03\x02\x01\x01", sent.evidence.to_json())],
        [("bob@ministry.govt.nz", sent.signed_data, sent.evidence.to_json())],
        [("carol@ministry.govt.nz", sent.receipt, sent.evidence.to_json())],
        [("bob@ministry.govt.nz", sent.receipt, b"{}")],
    ]
    for receipts in cases:
        with pytest.raises(EvidenceError):
            write_bundle(folder, message_id="<m@x>", original_signed_data=sent.signed_data,
                         receipts=receipts, anchors=[pki.ca.certificate])  # fmt: skip
        assert not folder.exists()


def test_readme_values_cannot_break_out(tmp_path: Path, pki: Pki, sent: Exchange) -> None:
    """A hostile Message-ID loses its line breaks and backticks in the README."""
    _bundle(tmp_path, pki, sent, message_id="<a`b@x>\n```sh\nrm -rf /\n```")
    readme = (tmp_path / "README.md").read_text()
    assert (
        readme.splitlines()[0] == "# SecureMail evidence for message `<a?b@x>????sh?rm -rf /????`"
    )
    assert len(_commands(tmp_path)) == 1
