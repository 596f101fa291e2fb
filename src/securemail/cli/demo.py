"""``securemail demo``: a local federation in which two members exchange a protected message.

Everything is real and on disk: the federation operator founds a federation, admits two
member gateways and publishes the signed directory; each gateway verifies the directory;
the ministry's gateway signs and encrypts a message to the certificate the directory lists
for the council, whose gateway opens it, checks that the signer's directory entry owns the
From: domain, and returns a signed receipt; tampering and forgery are refused. When the
``openssl`` command is present, it checks the same message independently.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from cryptography import x509

from securemail.directory import Directory
from securemail.directory.fetch import Source
from securemail.directory.store import DirectoryStore
from securemail.federation import FederationError
from securemail.federation.node import NodeTarget
from securemail.federation.operator import Application, add_member, init_federation, publish
from securemail.federation.store import Store
from securemail.keys.rollover import decryption_identities
from securemail.smime import (
    Protected,
    ProtectOptions,
    ReceiptRequest,
    SecurityLabel,
    SignerIdentity,
    SmimeError,
    TrustStore,
    Unprotected,
    make_receipt,
    protect,
    receipt_entity,
    unprotect,
    verify_receipt,
)
from securemail.smime.keys import load_certificate, load_private_key

MESSAGE = (
    "From: Aroha Ngata <aroha.ngata@ministry.govt.nz>\r\n"
    "To: Records Team <records@council.govt.nz>\r\n"
    "Subject: [IN-CONFIDENCE] Draft funding agreement for review\r\n"
    "Date: {date}\r\n"
    "Message-ID: <demo-{n}@ministry.govt.nz>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Kia ora,\r\n\r\nThe draft agreement is below; please send comments by Friday.\r\n\r\n"
    "Ngā mihi,\r\nAroha\r\n"
)
MEMBERS = (
    ("ministry", "Ministry of Examples", "ministry.govt.nz"),
    ("council", "Example District Council", "council.govt.nz"),
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


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the federation, the node directories and the messages here.",
)
def demo(workdir: Path | None) -> None:
    """Run a local federation end to end and check every promise along the way."""
    with tempfile.TemporaryDirectory(prefix="securemail-demo-") as tmp:
        directory = workdir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise click.UsageError(f"{directory} is not empty")
        try:
            _run(directory, datetime.now(UTC))
        except (SmimeError, FederationError, DemoError) as error:
            click.secho(f"\ndemo failed: {error}", fg="red", err=True)
            sys.exit(1)
    if workdir:
        click.echo(
            f"\nEverything is kept in {workdir}; the demo passphrase is in "
            f"{workdir / 'passphrase.txt'} (a demo only: never keep one beside keys)."
        )


class Node:
    """A member gateway's node directory, as the federation operator wrote it."""

    def __init__(self, path: Path, passphrase: bytes) -> None:
        self.path = path
        self.passphrase = passphrase

    def signer(self) -> SignerIdentity:
        return SignerIdentity(
            load_certificate((self.path / "certs" / "signing.pem").read_bytes()),
            load_private_key((self.path / "keys" / "signing.key").read_bytes(), self.passphrase),
        )

    def anchor(self) -> x509.Certificate:
        return load_certificate((self.path / "certs" / "federation-ca.pem").read_bytes())

    def fetch_directory(self, fed: Path, now: datetime) -> Directory:
        store = DirectoryStore(self.path / "directory-state", [self.anchor()])
        stored, _ = store.accept(Source(str(fed / "directory.json")).fetch(), now)
        return stored.directory


def _run(root: Path, now: datetime) -> None:
    passphrase = secrets.token_urlsafe(24).encode()
    (root / "passphrase.txt").write_bytes(passphrase + b"\n")
    (root / "passphrase.txt").chmod(0o600)
    fed = root / "federation"
    nodes = _found_federation(fed, root, passphrase, now)

    _step("Each gateway fetches the directory and verifies the operator's signature")
    directories = {name: node.fetch_directory(fed, now) for name, node in nodes.items()}
    directory = directories["ministry"]
    _ok(
        f"both accepted serial {directory.serial} of {directory.federation!r} "
        f"({len(directory.members)} members), signed and chained to the federation anchor"
    )

    original = MESSAGE.format(date=now.strftime("%a, %d %b %Y %H:%M:%S +0000"), n=1).encode()
    sent = _send(nodes["ministry"], directory, original, now)
    council = Gateway(nodes["council"], directories["council"])
    received = _receive(council, sent.message, original, now)
    receipt = _return_receipt(council, nodes["ministry"], directory, received, sent, now)
    _refusals(council, nodes["ministry"], directory, sent, receipt, now)
    (root / "message.eml").write_bytes(sent.message)
    (root / "receipt.der").write_bytes(receipt)
    _check_with_openssl(root, nodes["council"], original)


class Gateway:
    """A receiving gateway: its node, the directory it accepted, and the trust it derives."""

    def __init__(self, node: Node, directory: Directory) -> None:
        self.node = node
        self.directory = directory
        self.trust = TrustStore([node.anchor()], directory.crls)
        self.identities = decryption_identities(node.path, node.passphrase)

    def open(self, message: bytes, now: datetime) -> Unprotected:
        return unprotect(
            message, identities=self.identities, trust=self.trust, now=now, require_encryption=True
        )


def _send(ministry: Node, directory: Directory, original: bytes, now: datetime) -> Protected:
    _step("Ministry gateway signs and encrypts an IN-CONFIDENCE message to the council")
    target = directory.encryption_certificate("council.govt.nz", now)
    if target is None:
        raise DemoError("the directory lists no certificate for council.govt.nz")
    request = ReceiptRequest(b"demo-1", ("gateway@ministry.govt.nz",))
    options = ProtectOptions(label=SecurityLabel("IN-CONFIDENCE"), receipt_request=request)
    sent = protect(original, ministry.signer(), [target], now=now, options=options)
    _check(b"Draft funding" not in sent.message, "subject leaked into the outer message")
    _ok(
        f"encrypted to the council's certificate from the directory; {len(sent.message):,} "
        "bytes on the wire, the outer header shows only routing fields:"
    )
    for line in sent.message.split(b"\r\n\r\n", 1)[0].decode().splitlines():
        click.echo(f"      {line}")
    return sent


def _receive(council: Gateway, message: bytes, original: bytes, now: datetime) -> Unprotected:
    _step("Council gateway decrypts, verifies and checks the signer against the directory")
    received = council.open(message, now)
    _check(received.content == original, "delivered message differs from what was signed")
    _check(
        council.directory.may_sign_for(received.signature.signer, "ministry.govt.nz"),
        "the signer's directory entry does not own ministry.govt.nz",
    )
    if received.encryption is None:
        raise DemoError("message was not encrypted")
    label = received.signature.label
    _ok(
        f"signed by {received.signature.signer.subject.rfc4514_string()}, which the "
        "directory lists for ministry.govt.nz"
    )
    _ok(
        f"{received.signature.signature_algorithm}, {received.encryption.content_encryption}, "
        f"{received.encryption.key_management}; label {label.marking if label else 'none'}"
    )
    _ok("delivered message is byte-for-byte the signed original (subject restored)")
    return received


def _return_receipt(
    council: Gateway,
    ministry: Node,
    directory: Directory,
    received: Unprotected,
    sent: Protected,
    now: datetime,
) -> bytes:
    _step("Council gateway returns a signed receipt; the ministry checks it")
    receipt = make_receipt(received.signature, council.node.signer(), now=now)
    if sent.receipt_basis is None:
        raise DemoError("no receipt requested")
    trust = TrustStore([ministry.anchor()], directory.crls)
    verified = verify_receipt(receipt_entity(receipt), sent.receipt_basis, trust=trust, now=now)
    _check(
        directory.may_sign_for(verified.signer, "council.govt.nz"),
        "the receipt's signer is not the council's gateway",
    )
    _ok("receipt signed by the council's gateway and bound to our signature")
    return receipt


def _refusals(
    council: Gateway,
    ministry: Node,
    directory: Directory,
    sent: Protected,
    receipt: bytes,
    now: datetime,
) -> None:
    _step("Tampering and forgery are refused")
    _expect_refusal(
        "one byte of the ciphertext changed in transit",
        lambda: council.open(_flip(sent.message), now),
    )
    second = MESSAGE.format(date="Mon, 30 Nov 2026 09:00:00 +1300", n=2).encode()
    request = ReceiptRequest(b"demo-2", ("gateway@ministry.govt.nz",))
    target = directory.encryption_certificate("council.govt.nz", now)
    other = protect(
        second,
        ministry.signer(),
        [] if target is None else [target],
        now=now,
        options=ProtectOptions(receipt_request=request),
    )
    if other.receipt_basis is None:
        raise DemoError("no receipt requested")
    basis = other.receipt_basis
    _expect_refusal(
        "receipt replayed onto another message",
        lambda: verify_receipt(receipt, basis, trust=council.trust, now=now),
    )
    _check(
        not council.directory.may_sign_for(council.node.signer().certificate, "ministry.govt.nz"),
        "the council's certificate may sign for the ministry's domain",
    )
    _ok("the council's certificate cannot speak for ministry.govt.nz (directory check)")


def _found_federation(fed: Path, root: Path, passphrase: bytes, now: datetime) -> dict[str, Node]:
    _step("The federation operator founds a federation and admits two members")
    init_federation(fed, "SecureMail Demo Federation", passphrase, now, timedelta(days=7))
    _ok("root CA and directory-signing identity made (keys encrypted at rest)")
    store = Store(fed)
    nodes = {}
    for org_id, name, domain in MEMBERS:
        node = Node(root / org_id, passphrase)
        application = Application(
            org_id=org_id,
            name=name,
            domains=(domain,),
            endpoints=(f"mx.{domain}:25",),
            region="NZ",
            contact_email=f"securemail@{domain}",
            contact_phone="+64 4 000 0000",
            roles=("gateway",),
        )
        add_member(store, application, passphrase, now, NodeTarget(node.path, passphrase))
        nodes[org_id] = node
        _ok(
            f"{name} ({domain}): signing, encryption and TLS certificates; node directory "
            f"{node.path.name}/"
        )
    version, _ = publish(store, passphrase, now, timedelta(days=7))
    _ok(f"directory serial {version.directory.serial} published ({version.digest[:23]}…)")
    return nodes


def _flip(message: bytes) -> bytes:
    header, body = message.split(b"\r\n\r\n", 1)
    index = len(body) * 3 // 4  # inside the encrypted content
    replacement = b"A" if body[index : index + 1] != b"A" else b"B"
    return header + b"\r\n\r\n" + body[:index] + replacement + body[index + 1 :]


def _expect_refusal(what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except SmimeError as error:
        _ok(f"{what}: refused ({error.reason.value})")
        return
    raise DemoError(f"{what}: accepted")


def _check_with_openssl(root: Path, council: Node, original: bytes) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        click.echo("\n(openssl not installed: independent check skipped)")
        return
    _step("OpenSSL checks the same message independently")
    env = {**os.environ, "SECUREMAIL_DEMO_PASS": council.passphrase.decode()}
    decrypted = subprocess.run(
        [
            openssl,
            "cms",
            "-decrypt",
            "-in",
            "message.eml",
            "-recip",
            str(council.path / "certs" / "encryption.pem"),
            "-inkey",
            str(council.path / "keys" / "encryption.key"),
            "-passin",
            "env:SECUREMAIL_DEMO_PASS",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    _check(decrypted.returncode == 0, decrypted.stderr.decode(errors="replace"))
    inner_der = decrypted.stdout.split(b"\r\n\r\n", 1)[1]
    verified = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-CAfile",
            str(council.path / "certs" / "federation-ca.pem"),
            "-purpose",
            "smimesign",
        ],
        input=inner_der,
        cwd=root,
        capture_output=True,
        timeout=60,
        check=False,
    )
    _check(verified.returncode == 0, verified.stderr.decode(errors="replace"))
    _check(verified.stdout == original, "OpenSSL recovered a different message")
    _ok("openssl cms -decrypt and -verify: same message, signature and chain good")
