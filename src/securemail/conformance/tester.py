"""The tester's side of a run, from files: its keys, the verified directory, the target; and
a finished run turned into its signed report.

Shared by ``securemail conformance run`` and the node's scheduled conformance role, so both
test with the same identity rules and sign the same report.

Security: the tester's private keys are read with the node passphrase and never leave the
Kit; the directory is used only after its signature verified to the anchor.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from securemail.conformance import ConformanceError, ConformanceReason
from securemail.conformance.cases import Tester
from securemail.conformance.report import report_document, sign_report
from securemail.conformance.session import Kit, Run, Target
from securemail.directory.model import Directory
from securemail.keys.rollover import decryption_identities
from securemail.relay.tls import ClientCertificate
from securemail.smime import SignerIdentity
from securemail.smime.keys import load_certificate, load_certificates, load_private_key


@dataclass(frozen=True)
class Identity:
    """Where the test identity's files are and how the kit runs as it."""

    node_dir: Path
    org_id: str
    listen: tuple[str, int]
    wait: float
    revoked: Path | None = None  # a folder with signing.pem and signing.key, revoked


def read_anchors(node_dir: Path) -> tuple[x509.Certificate, ...]:
    """The federation anchor(s) in the test identity's node directory."""
    try:
        return tuple(load_certificates((node_dir / "certs" / "federation-ca.pem").read_bytes()))
    except (OSError, ValueError) as error:
        raise ConformanceError(ConformanceReason.UNREADABLE, str(error)) from None


def load_kit(
    identity: Identity,
    directory: Directory,
    passphrase: bytes | None,
    clock: Callable[[], datetime],
) -> Kit:
    """The Kit for ``identity``: its keys opened, checked against ``directory``."""
    node_dir, secret = identity.node_dir, passphrase or b""
    testing = directory.member(identity.org_id)
    if testing is None:
        raise ConformanceError(
            ConformanceReason.MEMBER_UNKNOWN, f"{identity.org_id} is not in the directory"
        )
    try:
        signer, revoked = _signers(identity, passphrase)
        identities = tuple(decryption_identities(node_dir, secret))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(node_dir / "certs" / "tls.pem", node_dir / "keys" / "tls.key", secret)
    except (OSError, ValueError, ssl.SSLError) as error:
        raise ConformanceError(ConformanceReason.KEYS_UNAVAILABLE, str(error)) from None
    client = ClientCertificate(
        str(node_dir / "certs" / "tls.pem"), str(node_dir / "keys" / "tls.key"), secret
    )
    tester = Tester(identity.org_id, testing.domains[0], signer, revoked)
    anchors = read_anchors(node_dir)
    return Kit(
        tester, identities, directory, anchors, identity.listen, tls, clock, identity.wait, client
    )


def _signers(
    identity: Identity, passphrase: bytes | None
) -> tuple[SignerIdentity, SignerIdentity | None]:
    """The tester's signing identity, and its revoked one if the identity names it."""
    keys = identity.node_dir
    signer = _signer(keys / "certs" / "signing.pem", keys / "keys" / "signing.key", passphrase)
    folder = identity.revoked
    if folder is None:
        return signer, None
    return signer, _signer(folder / "signing.pem", folder / "signing.key", passphrase)


def _signer(certificate: Path, key: Path, passphrase: bytes | None) -> SignerIdentity:
    return SignerIdentity(
        load_certificate(certificate.read_bytes()), load_private_key(key.read_bytes(), passphrase)
    )


def target_for(
    directory: Directory, member: str, recipient: str, endpoint: tuple[str, int] | None
) -> Target:
    """The gateway of ``member``: at ``endpoint``, or its first endpoint in the directory."""
    entry = directory.member(member)
    if entry is None:
        raise ConformanceError(
            ConformanceReason.MEMBER_UNKNOWN, f"{member} is not in the directory"
        )
    if endpoint is None:
        if not entry.endpoints:
            raise ConformanceError(ConformanceReason.BAD_TARGET, f"{member} lists no endpoint")
        first = entry.endpoints[0]
        endpoint = (first.host, first.port)
    return Target(endpoint[0], endpoint[1], entry, recipient)


def signed_report(
    kit: Kit, target: Target, run: Run, started: datetime, finished: datetime
) -> tuple[bytes, bytes]:
    """The run's report (canonical JSON) and the tester's detached signature over it."""
    document = report_document(
        tester=kit.tester.org_id,
        member=target.member.org_id,
        target=f"{target.host}:{target.port}",
        started=started,
        finished=finished,
        findings=run.findings,
        cases=run.cases,
    )
    return document, sign_report(document, kit.tester.signer, finished)
