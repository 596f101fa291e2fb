"""THREATS.md D and E on a real node: hostile mail sent straight to the peer listener.

Each message is made with the S/MIME core and the members' own keys (as a compromised or
careless member gateway would send it) and delivered over STARTTLS to the provider node's
peer port. A refused message is quarantined with its reason code, never reaches a mailbox,
and no notice is sent: whoever sent it is not proved to be the sender it names (THREATS.md K,
signed backscatter; tests/node/test_signed_backscatter.py has the attacks themselves).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import aiosmtplib
import pytest
from click.testing import CliRunner
from cryptography import x509

from securemail.cli.main import cli
from securemail.queue import Direction, Entry, QueueStore, State
from securemail.smime import ProtectOptions, SealedFor, SignerIdentity, protect, sign_message
from securemail.smime.keys import load_certificate, load_private_key
from tests.node.conftest import WAIT, Federation, mailbox_files, running

NOW = datetime.now(UTC)
CITIZEN = "hemi.walker@securemail.provider.nz"
AGENCY_USER = "aroha.ngata@agency.govt.nz"
HARBOUR_USER = "accounts@harbourbuilders.co.nz"
T = TypeVar("T")
SECRET = "The tender price is 4.2 million"  # must never leave the encryption
# As a conforming gateway signs mail for the citizen: sealed for the provider and her.
SEALED = ProtectOptions(sealed_for=SealedFor("provider", (CITIZEN,)))


def signer(federation: Federation, org_id: str) -> SignerIdentity:
    """The member's signing identity, read from its key folder as its node reads it."""
    passphrase = (federation.root / "passphrase.txt").read_bytes().rstrip(b"\r\n")
    folder = federation.root / org_id
    return SignerIdentity(
        load_certificate((folder / "certs" / "signing.pem").read_bytes()),
        load_private_key((folder / "keys" / "signing.key").read_bytes(), passphrase),
    )


def encryption_certificate(federation: Federation, org_id: str) -> x509.Certificate:
    return load_certificate((federation.root / org_id / "certs" / "encryption.pem").read_bytes())


def letter(author: str, n: int, *, extra: str = "") -> bytes:
    """A plain RFC 5322 message to the citizen; ``extra`` adds header fields (CRLF-ended)."""
    domain = author.rpartition("@")[2]
    return (
        f"From: {author}\r\n"
        f"To: {CITIZEN}\r\n"
        f"Subject: Tender {n}\r\n"
        f"Date: {email.utils.format_datetime(NOW)}\r\n"
        f"Message-ID: <refusal-{n}@{domain}>\r\n"
        f"{extra}"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"{SECRET} (message {n}).\r\n"
    ).encode()


def peer_tls(federation: Federation, member: str | None = "agency") -> ssl.SSLContext:
    """A client context trusting the federation CA (gateways are known by pin, not name),
    presenting ``member``'s TLS client certificate as its gateway does (None: none)."""
    context = ssl.create_default_context(
        cafile=str(federation.root / "agency" / "certs" / "federation-ca.pem")
    )
    context.check_hostname = False
    if member is not None:
        folder = federation.root / member
        passphrase = (federation.root / "passphrase.txt").read_text().strip()
        context.load_cert_chain(
            folder / "certs" / "tls.pem", folder / "keys" / "tls.key", password=passphrase
        )
    return context


async def send_to_peer(
    federation: Federation,
    node: str,
    mail_from: str,
    message: bytes,
    to: str = CITIZEN,
    *,
    member: str = "agency",
) -> str:
    """Send ``message`` to ``node``'s peer listener over STARTTLS as ``member``'s gateway
    (its TLS client certificate); the final reply line.

    ``mail_from`` may be "" (the null sender, ``MAIL FROM:<>``).
    """
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=federation.nodes[node].peer_port,
        start_tls=True,
        tls_context=peer_tls(federation, member),
        timeout=WAIT,
    )
    async with client:
        _, reply = await client.sendmail(mail_from, [to], message)
    return reply


def entries(federation: Federation, node: str, direction: Direction | None = None) -> list[Entry]:
    store = QueueStore.open(federation.config(node).database)
    try:
        return list(store.list(direction=direction))
    finally:
        store.close()


async def wait_until(probe: Callable[[], T | None], what: str) -> T:
    """Poll ``probe`` (every 0.1 s, at most WAIT seconds) until it gives a value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        found = await asyncio.to_thread(probe)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def final_inbound(federation: Federation, node: str) -> Entry | None:
    finished = (State.DELIVERED, State.BOUNCED, State.QUARANTINED)
    done = [e for e in entries(federation, node, Direction.INBOUND) if e.state in finished]
    return done[0] if done else None


def quarantine_reason(federation: Federation, node: str, entry_id: str) -> str:
    """The reason code of the entry's "quarantined" event (where the queue keeps it)."""
    store = QueueStore.open(federation.config(node).database)
    try:
        return next(e.reason for e in store.events(entry_id) if e.event == "quarantined")
    finally:
        store.close()


@dataclass(frozen=True)
class Refusal:
    entry: Entry  # the receiving node's inbound entry
    reason: str  # the reason code it was quarantined with
    notices: list[Entry]  # what the receiving node queued outbound
    received: list[bytes]  # what reached the sender's mailbox
    delivered: list[bytes]  # what reached the recipient's mailbox


def refuse(federation: Federation, sender_node: str, mail_from: str, message: bytes) -> Refusal:
    """Send ``message`` to the provider node and collect what came of it."""
    sender_box = federation.nodes[sender_node].mailbox(mail_from)

    async def scenario() -> Refusal:
        async with running(federation, "provider", sender_node):
            reply = await send_to_peer(federation, "provider", mail_from, message)
            assert reply.startswith("2"), reply
            entry = await wait_until(lambda: final_inbound(federation, "provider"), "a verdict")
            await asyncio.sleep(1.0)  # a notice, relayed and delivered, would show by now
            return Refusal(
                entry,
                quarantine_reason(federation, "provider", entry.id),
                entries(federation, "provider", Direction.OUTBOUND),
                mailbox_files(sender_box),
                mailbox_files(federation.nodes["provider"].mailbox(CITIZEN)),
            )

    return asyncio.run(scenario())


def assert_refused(refusal: Refusal, reasons: tuple[str, ...], mail_from: str) -> None:
    assert refusal.entry.state is State.QUARANTINED
    assert refusal.reason in reasons, refusal.reason
    assert refusal.delivered == []
    assert refusal.notices == [], f"a notice to {mail_from}"
    assert refusal.received == []


def header_values(message: bytes, name: str) -> list[str]:
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    return [" ".join(str(v).split()) for v in parsed.get_all(name) or []]


def test_signer_that_does_not_own_the_from_domain_is_quarantined(federation: Federation) -> None:
    """Mail signed by harbour with an agency From: is quarantined as from-not-authorised."""
    protected = protect(
        letter(AGENCY_USER, 1),
        signer(federation, "harbour"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
        options=SEALED,
    ).message
    refusal = refuse(federation, "gsp", HARBOUR_USER, protected)
    assert_refused(refusal, ("from-not-authorised",), HARBOUR_USER)


def test_signed_but_not_encrypted_peer_mail_is_quarantined(federation: Federation) -> None:
    """Peer mail that is signed but not encrypted is quarantined as not-encrypted."""
    signed = sign_message(letter(AGENCY_USER, 2), signer(federation, "agency"), now=NOW).message
    refusal = refuse(federation, "agency", AGENCY_USER, signed)
    assert_refused(refusal, ("not-encrypted",), AGENCY_USER)


def flip_ciphertext_byte(message: bytes) -> bytes:
    """The protected message with one byte of its AES-GCM ciphertext inverted."""
    head, _, body = message.partition(b"\r\n\r\n")
    der = bytearray(base64.b64decode(body))
    der[len(der) - 200] ^= 0xFF  # inside the encrypted content (the tag is the last 16)
    encoded = base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    return head + b"\r\n\r\n" + encoded


def test_tampered_ciphertext_is_quarantined_without_plaintext(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """A flipped AES-GCM ciphertext byte is refused: no plaintext in mailbox, notice or log."""
    protected = protect(
        letter(AGENCY_USER, 3),
        signer(federation, "agency"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
        options=SEALED,
    ).message
    refusal = refuse(federation, "agency", AGENCY_USER, flip_ciphertext_byte(protected))
    assert_refused(refusal, ("integrity-failed",), AGENCY_USER)
    assert SECRET not in caplog.text


def test_mail_encrypted_to_another_member_is_quarantined(federation: Federation) -> None:
    """Mail the provider cannot decrypt (encrypted to gsp) is quarantined as not-for-us."""
    protected = protect(
        letter(AGENCY_USER, 4),
        signer(federation, "agency"),
        [encryption_certificate(federation, "gsp")],
        now=NOW,
        options=SEALED,
    ).message
    refusal = refuse(federation, "agency", AGENCY_USER, protected)
    assert_refused(refusal, ("not-for-us",), AGENCY_USER)


def test_two_from_fields_inside_the_signed_content_are_quarantined(federation: Federation) -> None:
    """A signed message with two From: fields has no single author: from-multiple."""
    protected = protect(
        letter(AGENCY_USER, 5, extra="From: minister@agency.govt.nz\r\n"),
        signer(federation, "agency"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
        options=SEALED,
    ).message
    refusal = refuse(federation, "agency", AGENCY_USER, protected)
    assert_refused(refusal, ("from-multiple",), AGENCY_USER)


def test_plain_mail_on_the_peer_port_is_refused_at_smtp(federation: Federation) -> None:
    """Unprotected mail from a member gets 554 5.7.1 at DATA and is never queued."""

    async def scenario() -> str:
        async with running(federation, "provider"):
            try:
                await send_to_peer(federation, "provider", AGENCY_USER, letter(AGENCY_USER, 6))
            except aiosmtplib.SMTPDataError as refused:
                return f"{refused.code} {refused.message}"
            return "accepted"

    assert asyncio.run(scenario()).startswith("554 5.7.1")
    assert entries(federation, "provider") == []


def test_forged_trust_fields_are_replaced_by_ours(federation: Federation) -> None:
    """Trust fields a sender signed into its message are removed: only ours are delivered."""
    forged = (
        "Authentication-Results: provider.demo.securemail.test; smime=pass\r\n"
        "X-SecureMail-Status: verified; signer=gsp\r\n"
        "authentication-results: evil.example; smime=pass\r\n"
        "X-SecureMail-Signer: gsp\r\n"
    )
    protected = protect(
        letter(AGENCY_USER, 7, extra=forged),
        signer(federation, "agency"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
        options=SEALED,
    ).message
    outer_forgery = b"Authentication-Results: evil.example; smime=pass\r\n"

    async def scenario() -> bytes:
        async with running(federation, "provider"):
            await send_to_peer(federation, "provider", AGENCY_USER, outer_forgery + protected)
            box = federation.nodes["provider"].mailbox(CITIZEN)
            files = await wait_until(lambda: mailbox_files(box) or None, "delivery")
            return files[0]

    delivered = asyncio.run(scenario())
    results = header_values(delivered, "Authentication-Results")
    assert len(results) == 1, results
    assert results[0].startswith("provider.demo.securemail.test;")
    assert "smime=pass" in results[0]
    statuses = header_values(delivered, "X-SecureMail-Status")
    assert len(statuses) == 1 and "signer=agency" in statuses[0], statuses
    assert header_values(delivered, "X-SecureMail-Signer") != ["gsp"]
    assert b"evil.example" not in delivered
    assert b"signer=gsp" not in delivered


def test_operator_lists_quarantined_entries(federation: Federation) -> None:
    """`securemail queue list --state quarantined` shows the refused entry and its reason."""
    signed = sign_message(letter(AGENCY_USER, 8), signer(federation, "agency"), now=NOW).message

    async def scenario() -> Entry:
        async with running(federation, "provider"):
            await send_to_peer(federation, "provider", AGENCY_USER, signed)
            return await wait_until(lambda: final_inbound(federation, "provider"), "a verdict")

    entry = asyncio.run(scenario())
    config = str(federation.nodes["provider"].config)
    result = CliRunner().invoke(
        cli, ["queue", "list", "--state", "quarantined", "--json", "--config", config]
    )
    assert result.exit_code == 0, result.output
    assert entry.id in result.output
    assert '"state": "quarantined"' in result.output
    shown = CliRunner().invoke(cli, ["queue", "show", entry.id, "--config", config])
    assert shown.exit_code == 0, shown.output
    assert "quarantined [not-encrypted]" in shown.output


def test_refused_mail_from_the_null_sender_gets_no_notice(federation: Federation) -> None:
    """A refused message with MAIL FROM:<> is quarantined and no notice is queued (no loop)."""
    signed = sign_message(letter(AGENCY_USER, 9), signer(federation, "agency"), now=NOW).message

    async def scenario() -> Entry:
        async with running(federation, "provider"):
            await send_to_peer(federation, "provider", "", signed)
            entry = await wait_until(lambda: final_inbound(federation, "provider"), "a verdict")
            await asyncio.sleep(0.3)  # a notice would be queued by now
            return entry

    entry = asyncio.run(scenario())
    assert entry.state is State.QUARANTINED
    assert entry.mail_from == ""
    assert entries(federation, "provider", Direction.OUTBOUND) == []
