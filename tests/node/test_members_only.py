"""THREATS.md K / issue 16: only members get in at the peer listener (mutual TLS).

A client without a TLS client certificate is refused at MAIL (530 5.7.0) and nothing is
stored; a certificate from another CA fails the handshake; a foreign S/MIME stack (OpenSSL
for the message, swaks as the MTA) that presents a member's certificate still gets its
mail in, marked "recipient not bound" under ``[peer] unsealed = "mark"`` since OpenSSL
cannot write the profile's sealedFor attribute.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path

import aiosmtplib
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.pki.authority import generate_key, issue_for_key, make_root_ca
from securemail.queue import Direction
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, mailbox_files, running
from tests.node.test_inbound_refusals import (
    AGENCY_USER,
    CITIZEN,
    NOW,
    entries,
    letter,
    peer_tls,
    wait_until,
)


async def mail_without(federation: Federation, context: ssl.SSLContext) -> str:
    """EHLO, STARTTLS with ``context``, EHLO, MAIL: the reply to MAIL."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=federation.nodes["provider"].peer_port,
        start_tls=True,
        tls_context=context,
        timeout=WAIT,
    )
    async with client:
        try:
            reply = await client.mail(AGENCY_USER)
        except aiosmtplib.SMTPResponseException as refused:
            return f"{refused.code} {refused.message}"
        return f"{reply.code} {reply.message}"


def test_client_without_a_certificate_is_refused_before_mail(federation: Federation) -> None:
    """No TLS client certificate: MAIL gets 530 5.7.0, nothing is queued."""

    async def scenario() -> str:
        async with running(federation, "provider"):
            return await mail_without(federation, peer_tls(federation, None))

    reply = asyncio.run(scenario())
    assert reply.startswith("530 5.7.0 Client certificate required"), reply
    assert entries(federation, "provider") == []


def stranger_context(federation: Federation, tmp_path: Path) -> ssl.SSLContext:
    """A client presenting a clientAuth certificate from a CA the federation never heard of."""
    now = NOW - timedelta(minutes=5)
    ca = make_root_ca("Not the federation", now=now)
    key = generate_key()
    issued = issue_for_key(
        ca,
        "mallory",
        key.public_key(),
        now=now,
        domains=["mallory.example"],
        usage="both",
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    cert, key_file = tmp_path / "mallory.pem", tmp_path / "mallory.key"
    cert.write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = peer_tls(federation, None)
    context.load_cert_chain(cert, key_file)
    return context


def test_client_certificate_from_another_ca_fails_the_handshake(
    federation: Federation, tmp_path: Path
) -> None:
    """A certificate that does not chain to the federation anchor: the TLS handshake fails."""

    async def scenario() -> None:
        async with running(federation, "provider"):
            with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError, ConnectionError)):
                await mail_without(federation, stranger_context(federation, tmp_path))

    asyncio.run(scenario())
    assert entries(federation, "provider") == []


def openssl_message(federation: Federation, tmp_path: Path) -> bytes:
    """A message signed by the agency's key and encrypted to the provider, by OpenSSL."""
    openssl = require_tool("openssl")
    root, passphrase = federation.root, federation.root / "passphrase.txt"
    plain = tmp_path / "letter.eml"
    plain.write_bytes(letter(AGENCY_USER, 41))
    signed = subprocess.run(
        [openssl, "cms", "-sign", "-nodetach", "-md", "sha256", "-in", str(plain),
         "-signer", str(root / "agency" / "certs" / "signing.pem"),
         "-inkey", str(root / "agency" / "keys" / "signing.key"),
         "-passin", f"file:{passphrase}"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    encrypted = subprocess.run(
        [openssl, "cms", "-encrypt", "-aes-256-cbc", "-from", AGENCY_USER, "-to", CITIZEN,
         "-subject", "SecureMail message", str(root / "provider" / "certs" / "encryption.pem")],
        input=signed, check=True, capture_output=True,
    ).stdout  # fmt: skip
    return encrypted.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def plain_key(federation: Federation, tmp_path: Path, member: str) -> Path:
    """``member``'s TLS key without its passphrase, as swaks reads keys."""
    out = tmp_path / f"{member}-tls.key"
    subprocess.run(
        [require_tool("openssl"), "pkey", "-in", str(federation.root / member / "keys" / "tls.key"),
         "-passin", f"file:{federation.root / 'passphrase.txt'}", "-out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def test_openssl_and_swaks_with_a_members_client_certificate_get_in(
    federation: Federation, tmp_path: Path
) -> None:
    """OpenSSL's S/MIME sent by swaks with the agency's TLS client certificate passes the door
    (250); since OpenSSL writes no sealedFor and the agency's directory entry says its
    gateway always does, the message is then held as a downgrade (recipient-not-sealed),
    even under [peer] unsealed = "mark". A gateway built on OpenSSL's CLI joins as a member
    without sealed-for: tests/node/test_foreign_peer.py."""
    require_tool("swaks")
    config = federation.nodes["provider"].config
    config.write_text(config.read_text().replace("[peer]\n", '[peer]\nunsealed = "mark"\n', 1))
    message = openssl_message(federation, tmp_path)
    command = [
        "swaks", "--server", f"127.0.0.1:{federation.nodes['provider'].peer_port}",
        "--timeout", "30", "--tls", "--from", AGENCY_USER, "--to", CITIZEN,
        "--tls-cert", str(federation.root / "agency" / "certs" / "tls.pem"),
        "--tls-key", str(plain_key(federation, tmp_path, "agency")), "--data", "-",
    ]  # fmt: skip
    box = federation.nodes["provider"].mailbox(CITIZEN)

    def settled() -> list[tuple[str, str | None]] | None:
        found = entries(federation, "provider", Direction.INBOUND)
        final = [(e.state.value, e.reason) for e in found if e.state.value != "incoming"]
        return final if final and all(s != "active" for s, _ in final) else None

    async def scenario() -> tuple[str, list[tuple[str, str | None]]]:
        async with running(federation, "provider"):
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(process.communicate(message), WAIT)
            return out.decode(errors="replace"), await wait_until(settled, "a verdict")

    transcript, verdicts = asyncio.run(scenario())
    assert "<~  250 " in transcript, transcript
    assert verdicts == [("quarantined", "recipient-not-sealed")]
    assert mailbox_files(box) == []
