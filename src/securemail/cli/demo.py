"""``securemail demo``: two member organisations exchange a signed, encrypted, receipted message.

Everything is real: a federation root CA and member certificates are made on the spot, the
message is signed and encrypted by the sender's gateway, opened and verified by the
receiver's, a signed receipt comes back and is checked, and tampering is refused. When the
``openssl`` command is present, it checks the same message independently.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail.pki.authority import Issued, KeyType, issue, make_crl, make_root_ca, private_key_pem
from securemail.smime import (
    ProtectOptions,
    ReceiptRequest,
    RecipientIdentity,
    SecurityLabel,
    SignerIdentity,
    SmimeError,
    TrustStore,
    make_receipt,
    protect,
    receipt_entity,
    unprotect,
    verify_receipt,
)

MESSAGE = (
    "From: Aroha Ngata <aroha.ngata@ministry.govt.nz>\r\n"
    "To: Records Team <records@council.govt.nz>\r\n"
    "Subject: [IN-CONFIDENCE] Draft funding agreement for review\r\n"
    "Date: {date}\r\n"
    "Message-ID: <demo-1@ministry.govt.nz>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Kia ora,\r\n\r\nThe draft agreement is below; please send comments by Friday.\r\n\r\n"
    "Ngā mihi,\r\nAroha\r\n"
)


class DemoError(Exception):
    """A promise the demo checks did not hold."""


def _check(condition: bool, failure: str) -> None:
    if not condition:
        raise DemoError(failure)


def _step(text: str) -> None:
    click.secho(f"\n▶ {text}", bold=True)


def _ok(text: str) -> None:
    click.echo(f"  ✓ {text}")


def _member(ca: Issued, name: str, domain: str, now: datetime, key_type: KeyType) -> Issued:
    issued = issue(
        ca,
        f"{name} SecureMail gateway",
        now=now,
        organisation=name,
        domains=[domain],
        emails=[f"gateway@{domain}"],
        key_type=key_type,
    )
    _ok(
        f"{name}: gateway certificate for {domain} "
        f"({'RSA-2048' if key_type == 'rsa2048' else 'EC P-256'})"
    )
    return issued


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the certificates, keys and messages here for inspection.",
)
def demo(workdir: Path | None) -> None:
    """Run a two-member exchange end to end and check every promise along the way."""
    with tempfile.TemporaryDirectory(prefix="securemail-demo-") as tmp:
        directory = workdir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            _run(directory, datetime.now(UTC))
        except (SmimeError, DemoError) as error:
            click.secho(f"\ndemo failed: {error}", fg="red", err=True)
            sys.exit(1)
    if workdir:
        click.echo(f"\nFiles kept in {workdir}")


def _run(directory: Path, now: datetime) -> None:
    _step("Federation operator issues the trust anchor and member certificates")
    ca = make_root_ca("SecureMail Demo Federation", now=now)
    ministry = _member(ca, "Ministry of Examples", "ministry.govt.nz", now, "rsa2048")
    council = _member(ca, "Example District Council", "council.govt.nz", now, "p256")
    trust = TrustStore([ca.certificate], [make_crl(ca, [], now=now)])
    _ok("CRL published (no revocations)")

    _step("Ministry gateway signs and encrypts an IN-CONFIDENCE message to the council")
    original = MESSAGE.format(date=now.strftime("%a, %d %b %Y %H:%M:%S +0000")).encode()
    options = ProtectOptions(
        label=SecurityLabel("IN-CONFIDENCE"),
        receipt_request=ReceiptRequest(b"demo-1", ("gateway@ministry.govt.nz",)),
    )
    sent = protect(
        original,
        SignerIdentity(ministry.certificate, ministry.private_key),
        [council.certificate],
        now=now,
        options=options,
    )
    outer_header = sent.message.split(b"\r\n\r\n", 1)[0].decode()
    _check(b"Draft funding" not in sent.message, "subject leaked into the outer message")
    _ok(f"{len(sent.message):,} bytes on the wire; outer header shows only routing fields:")
    for line in outer_header.splitlines():
        click.echo(f"      {line}")

    _step("Council gateway decrypts, verifies the signature and validates the signer")
    received = unprotect(
        sent.message,
        identities=[RecipientIdentity(council.certificate, council.private_key)],
        trust=trust,
        now=now,
        require_encryption=True,
    )
    _check(received.content == original, "delivered message differs from what was signed")
    encryption = received.encryption
    if encryption is None:
        raise DemoError("message was not encrypted")
    _ok(f"signed by {received.signature.signer.subject.rfc4514_string()}")
    _ok(
        f"{received.signature.signature_algorithm}, {encryption.content_encryption}, "
        f"{encryption.key_management}"
    )
    label = received.signature.label
    _ok(
        f"security label {label.marking if label else 'none'}; "
        "delivered message is byte-for-byte the signed original (subject restored)"
    )

    _step("Council gateway returns a signed receipt; the ministry checks it")
    receipt = make_receipt(
        received.signature, SignerIdentity(council.certificate, council.private_key), now=now
    )
    if sent.receipt_basis is None:
        raise DemoError("no receipt requested")
    verified = verify_receipt(receipt_entity(receipt), sent.receipt_basis, trust=trust, now=now)
    _ok(f"receipt signed by {verified.signer.subject.rfc4514_string()} and bound to our signature")

    _step("Tampering is refused")
    _expect_refusal("one byte changed in transit", _flip(sent.message), council, trust, now)
    second = original.replace(b"<demo-1@", b"<demo-2@").replace(b"by Friday", b"by Monday")
    other = protect(
        second,
        SignerIdentity(ministry.certificate, ministry.private_key),
        [council.certificate],
        now=now,
        options=options,
    )
    if other.receipt_basis is None:
        raise DemoError("no receipt requested")
    try:
        verify_receipt(receipt, other.receipt_basis, trust=trust, now=now)
        raise DemoError("a receipt was accepted for another message")
    except SmimeError as error:
        _ok(f"receipt replayed onto another message: refused ({error.reason.value})")

    _write(directory, ca, ministry, council, sent.message, receipt)
    _check_with_openssl(directory, original)


def _flip(message: bytes) -> bytes:
    header, body = message.split(b"\r\n\r\n", 1)
    index = len(body) // 2
    replacement = b"A" if body[index : index + 1] != b"A" else b"B"
    return header + b"\r\n\r\n" + body[:index] + replacement + body[index + 1 :]


def _expect_refusal(
    what: str, message: bytes, council: Issued, trust: TrustStore, now: datetime
) -> None:
    try:
        unprotect(
            message,
            identities=[RecipientIdentity(council.certificate, council.private_key)],
            trust=trust,
            now=now,
        )
    except SmimeError as error:
        _ok(f"{what}: refused ({error.reason.value})")
        return
    raise DemoError(f"{what}: accepted")


def _write(
    directory: Path, ca: Issued, ministry: Issued, council: Issued, message: bytes, receipt: bytes
) -> None:
    (directory / "federation-ca.pem").write_bytes(ca.certificate_pem())
    for name, member in (("ministry", ministry), ("council", council)):
        (directory / f"{name}.pem").write_bytes(member.certificate_pem())
        key = directory / f"{name}.key"
        key.write_bytes(private_key_pem(member.private_key, None))
        key.chmod(0o600)
    (directory / "message.eml").write_bytes(message)
    (directory / "receipt.der").write_bytes(receipt)


def _check_with_openssl(directory: Path, original: bytes) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        click.echo("\n(openssl not installed: independent check skipped)")
        return
    _step("OpenSSL checks the same message independently")
    decrypted = subprocess.run(
        [
            openssl,
            "cms",
            "-decrypt",
            "-in",
            "message.eml",
            "-recip",
            "council.pem",
            "-inkey",
            "council.key",
        ],
        cwd=directory,
        capture_output=True,
        timeout=60,
        check=True,
    )
    inner_der = decrypted.stdout.split(b"\r\n\r\n", 1)[1]
    verified = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-CAfile",
            "federation-ca.pem",
            "-purpose",
            "smimesign",
        ],
        input=inner_der,
        cwd=directory,
        capture_output=True,
        timeout=60,
        check=False,
    )
    _check(verified.returncode == 0, verified.stderr.decode(errors="replace"))
    _check(verified.stdout == original, "OpenSSL recovered a different message")
    _ok("openssl cms -decrypt and -verify: same message, signature and chain good")
