"""The `securemail smime` commands as an operator uses them: files in, files out, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from securemail.cli.main import cli
from tests.conftest import MESSAGE, NOW, Pki

AT = ["--at", NOW.strftime("%Y-%m-%dT%H:%M:%S")]
PASSPHRASE = "a long passphrase for the test keys"


@pytest.fixture
def workdir(pki: Pki, tmp_path: Path) -> Path:
    """Anchor, CRL, two members' certificates and passphrase-encrypted keys, and a message."""
    pki.write_ca(tmp_path)
    pki.agency.write(tmp_path, PASSPHRASE.encode())
    pki.ministry.write(tmp_path, PASSPHRASE.encode())
    (tmp_path / "message.eml").write_bytes(MESSAGE)
    (tmp_path / "passphrase.txt").write_text(PASSPHRASE + "\n")
    return tmp_path


def invoke(*args: str) -> Result:
    """Run the CLI in-process with the test passphrase in $SM_PASS."""
    return CliRunner().invoke(cli, list(args), env={"SM_PASS": PASSPHRASE}, catch_exceptions=False)


def protect_args(workdir: Path, *extra: str) -> list[str]:
    return [
        "smime",
        "protect",
        "--signer-cert",
        str(workdir / "agency.govt.nz.pem"),
        "--signer-key",
        str(workdir / "agency.govt.nz.key"),
        "--recipient-cert",
        str(workdir / "ministry.govt.nz.pem"),
        "--passphrase-env",
        "SM_PASS",
        *AT,
        *extra,
    ]


def unprotect_args(workdir: Path, *extra: str) -> list[str]:
    return [
        "smime",
        "unprotect",
        "--cert",
        str(workdir / "ministry.govt.nz.pem"),
        "--key",
        str(workdir / "ministry.govt.nz.key"),
        "--trust-anchor",
        str(workdir / "ca.pem"),
        "--crl",
        str(workdir / "crl.pem"),
        "--passphrase-file",
        str(workdir / "passphrase.txt"),
        *AT,
        *extra,
    ]


def test_protect_then_unprotect_with_json_report(workdir: Path) -> None:
    """protect writes an S/MIME message; unprotect writes the original and a JSON report."""
    sent, received = workdir / "sent.eml", workdir / "received.eml"
    done = invoke(
        *protect_args(
            workdir,
            "--label",
            "IN-CONFIDENCE",
            "--privacy-mark",
            "PERSONAL",
            str(workdir / "message.eml"),
            "-o",
            str(sent),
        ),
    )
    assert done.exit_code == 0, done.output
    done = invoke(
        *unprotect_args(workdir, "--json", "--require-encryption", str(sent), "-o", str(received)),
    )
    assert done.exit_code == 0, done.output
    assert received.read_bytes() == MESSAGE
    report = json.loads(done.stderr)
    assert report["status"] == "verified"
    assert report["signer"]["domains"] == ["agency.govt.nz"]
    assert report["content_encryption"] == "aes256-gcm"
    assert report["key_management"] == "rsa-oaep-sha256"
    assert report["label"]["marking"] == "IN-CONFIDENCE PERSONAL"


def test_refusal_prints_reason_and_leaves_no_output(workdir: Path) -> None:
    """A tampered message exits 1 with `error: <reason>:` and writes no output file."""
    sent, received = workdir / "sent.eml", workdir / "received.eml"
    done = invoke(*protect_args(workdir, str(workdir / "message.eml"), "-o", str(sent)))
    assert done.exit_code == 0, done.output
    data = bytearray(sent.read_bytes())
    data[-200] = ord("A") if data[-200] != ord("A") else ord("B")
    sent.write_bytes(bytes(data))
    done = invoke(*unprotect_args(workdir, str(sent), "-o", str(received)))
    assert done.exit_code == 1
    assert done.stderr.startswith("error: integrity-failed: ")
    assert not received.exists()
    assert list(workdir.glob(".received.eml.*")) == []


def test_encrypted_key_without_passphrase_is_a_usage_error(workdir: Path) -> None:
    """An encrypted key and no passphrase source: exit 2 with a hint, nothing written."""
    args = [
        a
        for a in protect_args(workdir, str(workdir / "message.eml"))
        if a not in ("--passphrase-env", "SM_PASS")
    ]
    done = invoke(*args)
    assert done.exit_code == 2
    assert "--passphrase-env" in done.output


def test_receipt_round_trip_through_the_cli(workdir: Path) -> None:
    """protect --receipt-to, receipt, verify-receipt: the receipt verifies against the basis."""
    sent, basis, receipt = workdir / "sent.eml", workdir / "basis.json", workdir / "r.p7m"
    done = invoke(
        *protect_args(
            workdir,
            "--receipt-to",
            "gateway@agency.govt.nz",
            "--receipt-basis",
            str(basis),
            str(workdir / "message.eml"),
            "-o",
            str(sent),
        ),
    )
    assert done.exit_code == 0, done.output
    receipt_args = [a if a != "unprotect" else "receipt" for a in unprotect_args(workdir)]
    done = invoke(*receipt_args, str(sent), "-o", str(receipt))
    assert done.exit_code == 0, done.output
    verify = [
        "smime",
        "verify-receipt",
        "--original",
        str(basis),
        "--trust-anchor",
        str(workdir / "ca.pem"),
        "--crl",
        str(workdir / "crl.pem"),
        *AT,
        "--json",
        str(receipt),
    ]
    done = invoke(*verify)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["signer"]["domains"] == ["ministry.govt.nz"]


def test_receipt_refused_when_not_requested(workdir: Path) -> None:
    """`securemail smime receipt` for a message that asked for none exits 1, writes nothing."""
    sent, receipt = workdir / "sent.eml", workdir / "r.p7m"
    invoke(*protect_args(workdir, str(workdir / "message.eml"), "-o", str(sent)))
    receipt_args = [a if a != "unprotect" else "receipt" for a in unprotect_args(workdir)]
    done = invoke(*receipt_args, str(sent), "-o", str(receipt))
    assert done.exit_code == 1
    assert "receipt-not-requested" in done.stderr
    assert not receipt.exists()


def test_console_script_and_demo_check() -> None:
    """`securemail demo --check` runs the federation's scripted exchange and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "securemail", "demo", "--check"],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Every scripted message had the promised outcome." in done.stdout
    assert done.stdout.count(b"smime=pass") == 5
